"""Run under `accelerate launch --num_processes 2 --cpu`: one GRPO step of the tiny model, DDP-wrapped,
with ``shared_prefix`` off and then on from the same start and seed; each rank writes the differences
between the two (samples, loss, each parameter's update), the calls of the shared-prefix functions
on each (which path really ran) and a checksum of its trainable parameters after the shared-prefix
step, so the test can check both the exactness and the DDP sync."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from accelerate import Accelerator

from tests.helpers.exactness import relative_errors, shared_prefix_calls
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.core.paths import TINY_MODEL_DIR
from trainer.data import load_dataset_use
from trainer.model.loading import generation_kwargs, load_policy
from trainer.model.trainable import set_trainable, trainable_parameters
from trainer.step.context import StepContext
from trainer.step.grpo_step import grpo_step


def one_step(accelerator: Accelerator, shared: bool, records: list) -> tuple[dict, list, dict, Counter]:
    cfg = build_config(
        {
            "model_name_or_path": str(TINY_MODEL_DIR),
            "shared_prefix": shared,
            "fps": 8.0,
            "max_frames": 8,
            "min_pixels": 3136,
            "max_pixels": 3136,
            "grpo_sample_size": 4,
            "generation_max_length": 8,
            "grpo_beta": 0.04,
            # A gradient even when every group's rewards tie (zero advantages, KL 0 at the start).
            "entropy_coeff": 1.0,
            "max_grad_norm": 0.0,
        }
    )
    torch.manual_seed(0)
    model, processor = load_policy(TINY_MODEL_DIR)
    ref_model = load_policy(TINY_MODEL_DIR)[0].eval().requires_grad_(False)
    model = set_trainable(model, cfg.model).train()
    # SGD with lr 1: the update is minus the (all-reduced) gradient.
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    assert isinstance(model, torch.nn.parallel.DistributedDataParallel)
    ctx = StepContext(
        accelerator, model, ref_model, processor, cfg, optimizer, scheduler, generation_kwargs(processor, 8)
    )
    # Each rank its own questions, the same on both paths.
    torch.manual_seed(1 + accelerator.process_index)
    with shared_prefix_calls() as calls:
        metrics, micro = grpo_step(ctx, [records])
    # The trainable parameters (the frozen ones cannot differ).
    named = accelerator.unwrap_model(model).named_parameters()
    params = {n: p.detach().clone() for n, p in named if p.requires_grad}
    return metrics, micro, params, calls


def main() -> None:
    out_dir, workspace = Path(sys.argv[1]), Path(sys.argv[2])
    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    records = load_dataset_use("synthetic_motion_train", workspace, 0)[2 * rank : 2 * rank + 2]
    per_metrics, per_micro, per_params, per_calls = one_step(accelerator, False, records)
    metrics, micro, params, calls = one_step(accelerator, True, records)
    start = dict(load_policy(TINY_MODEL_DIR)[0].named_parameters())
    digest = hashlib.sha256()
    for name, param in sorted(params.items()):
        digest.update(name.encode())
        digest.update(param.to(torch.float32).contiguous().numpy().tobytes())
    result = {
        "world": accelerator.num_processes,
        "same_samples": torch.equal(micro[0].rollout.completion_ids, per_micro[0].rollout.completion_ids),
        "loss_diff": abs(metrics[mk.LOSS] - per_metrics[mk.LOSS]),
        # Relative error of each trainable parameter's update (minus its all-reduced gradient)
        # against the per-sample path's; and those the per-sample step left where they were.
        "update_rel": relative_errors(
            {n: params[n] - start[n] for n in params}, {n: per_params[n] - start[n] for n in params}
        ),
        "unmoved": [n for n in params if torch.equal(per_params[n], start[n])],
        "moved": max(float((params[n] - start[n]).abs().max()) for n in params),
        "shared_prefix_calls": [per_calls, calls],
        "prefill_tokens": [per_metrics[mk.PREFILL_TOKENS], metrics[mk.PREFILL_TOKENS]],
        "checksum": digest.hexdigest(),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
