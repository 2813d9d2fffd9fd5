"""How a run reports while it runs: live Ray metrics (gpo_* series) and optional experiment tracking (MLflow).

Neither is ever the truth about a run (the run directory is); both are best effort and never fail it."""
