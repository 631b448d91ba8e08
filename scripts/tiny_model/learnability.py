"""Is the synthetic task learnable by the tiny model? Train on TRUE labels for a while, then measure
held-out accuracy (a check for the GRPO preset's designers, not a test: it takes minutes).

    .venv/bin/python -m scripts.tiny_model.learnability --max-seconds 120
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from scripts.tiny_model import warm_start
from trainer.core.paths import SYNTHETIC_DIR, TINY_MODEL_DIR
from trainer.data.inputs import build_inputs
from trainer.data.prompts import NO_THINK, THINK
from trainer.model.families import family_of_model
from trainer.model.loading import generation_kwargs, load_policy
from trainer.score.rewards import accuracy_reward, format_reward


def evaluate(
    model: Any, processor: Any, dataset_dir: Path, mode: str, limit: int = 200, batch: int = 100
) -> dict:
    import torch

    from trainer.data.inputs import opened_block, render_prompts

    examples, options, video = warm_start.load_examples(dataset_dir, "eval")
    # The dataset's pixel knobs are for 28 px tokens: the same tokens per frame for this family's.
    video = video.for_token_size(28 * 28, family_of_model(model).pixels_per_token)
    examples = examples[:limit]
    acc = fmt = 0.0
    for i in range(0, len(examples), batch):
        chunk = examples[i : i + batch]
        convs = [warm_start.conversation(e, options, mode, video) for e in chunk]
        modes = [mode] * len(convs)
        inputs = build_inputs(processor, convs, modes=modes)
        with torch.no_grad():
            out = model.generate(**inputs, **generation_kwargs(processor, max_new_tokens=40, do_sample=False))
        texts = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        # A template that opens the think block itself: the answer starts with what it opened.
        texts = [
            opened_block(p) + t for p, t in zip(render_prompts(processor, convs, modes), texts, strict=True)
        ]
        acc += sum(accuracy_reward(t, e.letter, options) for t, e in zip(texts, chunk, strict=True))
        fmt += sum(format_reward(t, mode) for t in texts)
    return {"mode": mode, "accuracy": acc / len(examples), "format": fmt / len(examples)}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=TINY_MODEL_DIR)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="training wall-time budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("qwen_vl_utils").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    model, processor = load_policy(args.model)
    before = evaluate(model, processor, SYNTHETIC_DIR, NO_THINK)
    t0 = time.perf_counter()
    warm_start.train(
        model, processor, SYNTHETIC_DIR, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=1,
        pool_size=2000, answer_fn=lambda ex, rng: ex.letter, max_seconds=args.max_seconds,
        pixels_per_token=family_of_model(model).pixels_per_token,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    after = [evaluate(model, processor, SYNTHETIC_DIR, mode) for mode in (NO_THINK, THINK)]
    print(json.dumps({"before": before, "train_s": round(seconds, 1), "after": after}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
