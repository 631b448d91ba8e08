"""Rollout generation: transformers' generate vs the colocated vLLM engine, side by side in one run.

Both sample G completions for the same prompt batch (the same decoded frames, the same weights:
the head_dim-64 tiny model, since vLLM's CPU attention refuses head_dim 16) and are timed over the
same repetitions after one warm-up call each. Ends with one line:

    vllm-vs-hf: G=8 frames=16 hf=Xs vllm=Ys speedup=Zx

(seconds per generation call for B questions x G samples; speedup = hf / vllm). Needs vLLM:

    .venv-vllm/bin/python bench/vllm_vs_hf.py          # CPU (bash scripts/venv.sh vllm)
    python bench/vllm_vs_hf.py --model Qwen/Qwen2.5-VL-3B-Instruct --max-pixels 200704   # GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from trainer.core.paths import SYNTHETIC_DIR, TINY_VLLM_MODEL_DIR  # noqa: E402
from trainer.core.video_config import VideoConfig  # noqa: E402
from trainer.model.loading import generation_kwargs, load_policy  # noqa: E402
from trainer.rollout.hf import build_prompt_batch, generate_rollouts  # noqa: E402


@dataclass
class Question:
    id: str
    video: str
    question: str
    options: dict
    answer: str = "A"
    image: None = None
    mode: str = "think"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations, vLLM's processor cache
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(TINY_VLLM_MODEL_DIR))
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-pixels", type=int, default=3136)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", type=float, default=0.02, help="vllm_gpu_memory_utilization")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from trainer.rollout.vllm_engine import VLLMRollouts

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bf16" if device == "cuda" else None
    model, processor = load_policy(args.model, dtype=dtype, device=device)
    meta = json.loads((SYNTHETIC_DIR / "dataset.json").read_text())
    options = {chr(ord("A") + i): text for i, text in enumerate(meta["options"])}
    clips = sorted((SYNTHETIC_DIR / "videos").glob("*.mp4"))[: args.questions]
    questions = [Question(c.stem, str(c), "Which way does the square move?", options) for c in clips]
    video = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=args.max_pixels)
    # The synthetic clips hold 8 frames; each is shown twice to reach --frames.
    repeat = max(1, args.frames // 8)
    prompt = build_prompt_batch(
        processor, questions, video, video_transform=lambda v: v.repeat_interleave(repeat, 0)
    )
    kwargs = generation_kwargs(processor, args.max_new_tokens)
    engine = VLLMRollouts(
        args.model, processor, gpu_memory_utilization=args.memory, seed=0,
        dtype="bfloat16" if device == "cuda" else "float32",
    )  # fmt: skip
    engine.load_weights(model)
    g = args.group_size
    hf_s = timed(lambda: generate_rollouts(model, processor, prompt, g, kwargs), args.repeats)
    vllm_s = timed(lambda: engine(model, processor, prompt, g, kwargs), args.repeats)
    frames = 8 * repeat
    print(f"vllm-vs-hf: G={g} frames={frames} hf={hf_s:.2f}s vllm={vllm_s:.2f}s speedup={hf_s / vllm_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
