"""Evaluation: held-out accuracy during a run, and benchmarks of checkpoints (`vgrpo eval`)."""
