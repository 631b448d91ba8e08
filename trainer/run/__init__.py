"""A whole run: the loop, checkpoints, reporting to the run database, pre-flight checks, launchers."""
