"""Pieces of scripts/build_tiny_model.py: tokenizer, model config, format warm start."""
