"""``python -m trainer.train --model_name_or_path ... --dataset_use ... --grpo_alpha 0.5 ...``

The seed's entry point; the same flags as ``vgrpo train``.
"""

from __future__ import annotations

import sys

from trainer.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
