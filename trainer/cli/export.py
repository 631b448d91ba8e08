"""`vgrpo export`: turn a checkpoint into one plain Hugging Face model folder.

    vgrpo export --merge CHECKPOINT -o DIR [--dtype auto|bf16|fp16|fp32]

A LoRA checkpoint holds only the adapters and the modules trained fully (merger, vision tower);
``--merge`` loads it onto its base model with peft, folds the adapters in and writes the full
weights (safetensors) with the processor files, so the family's transformers class
(``from_pretrained``) and vLLM load DIR without peft. A full checkpoint is written out the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trainer.core.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as merged full weights", description=__doc__)
    p.add_argument("--merge", required=True, metavar="CHECKPOINT", help="checkpoint folder (LoRA or full)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="new folder to write")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="weights dtype (default auto: the base model's own)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainer.model.loading import export_merged, is_adapter_checkpoint

    source = Path(args.merge)
    if not ((source / "config.json").is_file() or is_adapter_checkpoint(source)):
        raise ConfigError(f"--merge {source}: not a checkpoint (no config.json or adapter_config.json)")
    out = export_merged(source, args.output, dtype=args.dtype)
    kind = "LoRA adapters merged into their base model" if is_adapter_checkpoint(source) else "full weights"
    print(f"exported {source} to {out} ({kind})")
    return 0
