"""Ray actor shells: thin async wrappers that put the pure core and its stores onto a cluster."""
