"""Video GRPO Studio's engine: data, rewards, GRPO math, the training loop and the run database.

Nothing in this package imports gradio or `studio` (tests/test_layering.py checks it).
"""

__version__ = "0.1.0"
