"""One GRPO step: its context, the rollout phase, the update phase, forward counts and memory cost."""
