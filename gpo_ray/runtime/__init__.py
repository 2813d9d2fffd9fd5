"""Running GPO for real: the run directory, actors, the controller."""
