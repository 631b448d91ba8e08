"""Scoring completions: the reward functions, their weighted sum, and dynamic sampling's group filter."""
