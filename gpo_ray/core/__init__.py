"""The pure GPO core: no Ray, no I/O."""
