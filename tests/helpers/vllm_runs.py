"""What the vLLM test modules share: their marks, one engine with two synthetic questions, and a
short in-process GRPO run with vLLM as the sampler (the loop's order: sync weights, then step)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers.records import video_record
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.core.video_config import VideoConfig
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import build_prompt_batch

VLLM_MARKS = [
    pytest.mark.vllm,
    # vLLM 0.32's own imports and engine start use deprecated torch/transformers APIs.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def engine_setup(model_dir: Path, synthetic_dir: Path, video: VideoConfig, bf16: bool = False) -> tuple:
    """(policy, processor, two no_think video records, their prompt batch, a vLLM engine)."""
    from trainer.rollout.vllm_engine import VLLMRollouts

    torch.manual_seed(0)
    model, processor = load_policy(model_dir, dtype="bf16" if bf16 else None)
    videos = synthetic_dir / "videos"
    records = [
        video_record("a", videos / "m_0001.mp4", "Which way does the square move?", mode="no_think"),
        video_record("b", videos / "m_0002.mp4", "Where does it go?", answer="B", mode="no_think"),
    ]
    prompt = build_prompt_batch(processor, records, video)
    engine = VLLMRollouts(
        str(model_dir),
        processor,
        gpu_memory_utilization=0.01,
        seed=0,
        dtype="bfloat16" if bf16 else "float32",
    )
    return model, processor, records, prompt, engine


def short_grpo_run(
    engine: Any,
    processor: Any,
    records: list,
    model_dir: Path,
    pixels: int,
    bf16: bool = False,
    steps: int = 3,
) -> tuple[Any, dict[str, torch.Tensor], list[float]]:
    """``steps`` GRPO steps of a fresh policy (vision tower and mergers training, G = 4, beta 0)
    sampling with ``engine``; returns the trained policy, its starting weights and each step's
    ``rollout/sampler_logp_diff``."""
    from accelerate import Accelerator

    from trainer.model.trainable import set_trainable, trainable_parameters
    from trainer.step.context import StepContext
    from trainer.step.grpo_step import grpo_step

    cfg = build_config(
        {
            "model_name_or_path": str(model_dir), "rollout_backend": "vllm", "bf16": bf16,
            "tune_mm_vision": True, "tune_mm_mlp": True, "fps": 8.0, "max_frames": 8,
            "min_pixels": pixels, "max_pixels": pixels, "grpo_sample_size": 4, "generation_max_length": 12,
            "grpo_beta": 0.0, "learning_rate": 1e-3,
        }
    )  # fmt: skip
    torch.manual_seed(0)
    model, _ = load_policy(model_dir, dtype="bf16" if bf16 else None)
    model = set_trainable(model, cfg.model).train()
    start = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=cfg.optim.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    kwargs = generation_kwargs(processor, 12)
    ctx = StepContext(Accelerator(cpu=True), model, None, processor, cfg, optimizer, scheduler, kwargs)
    ctx.sampler = engine
    diffs = []
    for _ in range(steps):
        engine.load_weights(model)  # as the loop does after every optimiser step
        metrics, _ = grpo_step(ctx, [records])
        diffs.append(metrics[mk.SAMPLER_LOGP_DIFF])
    return model, start, diffs


def moved_parameters(model: Any, start: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in model.state_dict().items() if not torch.equal(p, start[n])}
