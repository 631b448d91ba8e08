"""The policy update's math: completion log-probs, GRPO advantages and loss, sampler-mismatch correction."""
