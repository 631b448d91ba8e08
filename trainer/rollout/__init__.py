"""Sampling G completions per question: the transformers decode loop (shared prefix) and vLLM."""
