"""Build a head_dim-64 variant of an embedded tiny model, for vLLM's CPU build.

vLLM's CPU attention serves head_dim 32, 64, 80, 96, 112, 128, 256 only ("Unsupported CPU
attention configuration: head_dim=16" for the embedded models, 64 wide with 4 heads). A variant
keeps the embedded model's tokenizer, processor, chat template and depth, and widens the language
model to hidden 128 with 2 heads of 64 (1 KV head, grouped like the real model) and the vision
tower to hidden 128 with 2 heads of 64, with the real mrope_section halved (32 rotary
frequencies). Then the same format warm start as the embedded model (random answer letters:
parseable outputs at chance accuracy), so a GRPO run through vLLM can be seen to learn.
Deterministic for a seed and thread count; offline.

``--family qwen2_5_vl`` (default) builds assets/tiny-qwen2.5-vl-hd64 from assets/tiny-qwen2.5-vl,
``--family qwen3_vl`` assets/tiny-qwen3-vl-hd64 from assets/tiny-qwen3-vl, ``--family qwen3_5``
assets/tiny-qwen3.5-hd64 from assets/tiny-qwen3.5 (build those first: scripts/build_tiny_model.py
--family ...). Qwen3.5's linear-attention layers also get key and value heads of 64 (vLLM's CPU
Gated DeltaNet kernel refuses 16 and 32), and rotary on a quarter of each full-attention head as in
the real model (16 dims: the tiny model's 8 frequencies, mrope_section unchanged).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from scripts.tiny_model import config as tiny_config  # noqa: E402
from scripts.tiny_model import qwen3_5 as tiny_qwen3_5  # noqa: E402
from scripts.tiny_model import qwen3_vl as tiny_qwen3_vl  # noqa: E402
from scripts.tiny_model import warm_start  # noqa: E402
from trainer.core.paths import (  # noqa: E402
    SYNTHETIC_DIR,
    TINY_MODEL_DIR,
    TINY_QWEN3_5_DIR,
    TINY_QWEN3_5_VLLM_DIR,
    TINY_QWEN3_VL_DIR,
    TINY_QWEN3_VL_VLLM_DIR,
    TINY_VLLM_MODEL_DIR,
)
from trainer.model.families import family_for  # noqa: E402

logger = logging.getLogger("build_tiny_vllm_model")

# The tiny Qwen3.5's variant (tests/vllm/conftest.py names the same folder).

TEXT_OVERRIDES = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
}
# The vision tower too: vLLM's vision rotary/attention path disagreed with transformers' at head_dim 16.
VISION_OVERRIDES = {"hidden_size": 128, "num_heads": 2, "intermediate_size": 512}
# Files taken unchanged from the embedded model (same tokenizer and processor, so the same prompts).
SHARED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "generation_config.json",
)


@dataclass(frozen=True)
class Variant:
    """One family's head_dim-64 variant: where it comes from and goes, and what differs."""

    source: Path  # the embedded tiny model whose tokenizer, processor and template it keeps
    out: Path
    tiny: Any  # the family's scripts/tiny_model module: model_config, generation_config
    # 64 / 2 = 32 rotary frequencies, split temporal/height/width in the real model's ratio.
    mrope_section: tuple[int, int, int]
    pixels_per_token: int  # the warm start's pixel budgets are scaled to the family's visual token
    text_overrides: dict[str, Any] = field(default_factory=dict)  # beyond TEXT_OVERRIDES
    rope_overrides: dict[str, Any] = field(default_factory=dict)  # beyond mrope_section


VARIANTS = {
    # Real [16, 24, 24] halved.
    "qwen2_5_vl": Variant(TINY_MODEL_DIR, TINY_VLLM_MODEL_DIR, tiny_config, (8, 12, 12), 28 * 28),
    # Real [24, 20, 20] halved (interleaved: 3 x 10 <= 32 frequencies).
    "qwen3_vl": Variant(TINY_QWEN3_VL_DIR, TINY_QWEN3_VL_VLLM_DIR, tiny_qwen3_vl, (12, 10, 10), 32 * 32),
    # The tiny model's [3, 3, 2] on 16 rotary dims: a quarter of 64, the real model's factor.
    "qwen3_5": Variant(
        TINY_QWEN3_5_DIR,
        TINY_QWEN3_5_VLLM_DIR,
        tiny_qwen3_5,
        (3, 3, 2),
        32 * 32,
        text_overrides={"linear_key_head_dim": 64, "linear_value_head_dim": 64},
        rope_overrides={"partial_rotary_factor": 0.25},
    ),
}


def model_config(tokenizer: object, variant: Variant = VARIANTS["qwen2_5_vl"]) -> object:
    """The embedded model's config with the wider language model (the vision merger projects to it)."""
    config = variant.tiny.model_config(tokenizer)
    for key, value in {**TEXT_OVERRIDES, **variant.text_overrides}.items():
        setattr(config.text_config, key, value)
    rope = dict(config.text_config.rope_parameters, **variant.rope_overrides)
    rope["mrope_section"] = list(variant.mrope_section)
    config.text_config.rope_parameters = rope
    for key, value in VISION_OVERRIDES.items():
        setattr(config.vision_config, key, value)
    config.vision_config.out_hidden_size = TEXT_OVERRIDES["hidden_size"]
    return config


def build(
    out_dir: Path,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    pool_size: int,
    family: str = "qwen2_5_vl",
) -> dict:
    import torch
    from transformers import AutoProcessor

    variant = VARIANTS[family]
    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        shutil.copy2(variant.source / name, out_dir / name)
    processor = AutoProcessor.from_pretrained(out_dir)
    model = family_for(family).load_class()(model_config(processor.tokenizer, variant))
    model.generation_config = variant.tiny.generation_config(processor.tokenizer)
    t0 = time.perf_counter()
    losses = warm_start.train(
        model, processor, SYNTHETIC_DIR, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        pool_size=pool_size, pixels_per_token=variant.pixels_per_token,
    )  # fmt: skip
    warm_s = time.perf_counter() - t0
    model.save_pretrained(out_dir)
    return {
        "family": family,
        "parameters": sum(p.numel() for p in model.parameters()),
        "warm_start_steps": steps,
        "warm_start_s": round(warm_s, 1),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seed": seed,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(VARIANTS), default="qwen2_5_vl")
    parser.add_argument("--out", type=Path, default=None, help="default: its -hd64 folder in assets/")
    parser.add_argument("--seed", type=int, default=0)
    # The format (not the answer) is learned in ~25 steps; a small clip pool keeps decoding cheap.
    parser.add_argument("--steps", type=int, default=60, help="format warm-start steps")
    parser.add_argument("--pool-size", type=int, default=64, help="train clips the warm start draws from")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("qwen_vl_utils").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or VARIANTS[args.family].out
    stats = build(out, args.seed, args.steps, args.batch_size, args.lr, args.pool_size, args.family)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({**stats, "size_mb": round(size / 1e6, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
