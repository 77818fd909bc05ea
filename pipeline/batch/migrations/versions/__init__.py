"""Schema revisions of the results store, oldest first (0001, 0002, ...)."""
