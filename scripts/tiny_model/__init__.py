"""Pieces of scripts/build_tiny_model.py: tokenizer, model config (Qwen2.5-VL in config.py, Qwen2-VL in
qwen2_vl.py), format warm start."""
