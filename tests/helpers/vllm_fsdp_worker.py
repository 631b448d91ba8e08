"""Run under ``torchrun --nproc_per_node 2`` on CPUs (gloo) in .venv-vllm: the vLLM weight sync from
an FSDP2-sharded policy, which accelerate cannot start on CPUs (trainer/model/reference.py).

Each process wraps the policy as accelerate's FSDP2 preparation does (configs/accelerate_fsdp.yaml's
units) and starts its own engine in the process group (as the loop does under ``accelerate
launch``), loaded from disk with the initial weights. The policy's weights are changed before
sharding, so the engine can only learn them through ``load_weights`` gathering the shards: its
log-probs of its own samples must then be the changed model's, not the initial one's.

argv: OUT_DIR. Writes OUT_DIR/rank{r}.json.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from accelerate.utils.fsdp_utils import fsdp2_prepare_model

from tests.helpers.records import video_record
from tests.helpers.reference_fsdp_worker import local_elements, plugin_from_config
from tests.helpers.sampler_logprobs import max_abs_diff, policy_logprobs
from trainer.core.paths import SYNTHETIC_DIR, TINY_VLLM_MODEL_DIR
from trainer.core.video_config import VideoConfig
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import build_prompt_batch
from trainer.rollout.vllm_engine import VLLMRollouts

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    initial, processor = load_policy(TINY_VLLM_MODEL_DIR)
    changed = copy.deepcopy(initial)
    torch.manual_seed(0)  # the same change on every rank
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin_from_config()),
        mixed_precision="no",
        device=torch.device("cpu"),
        is_main_process=rank == 0,
    )
    policy = fsdp2_prepare_model(accelerator, copy.deepcopy(changed))
    engine = VLLMRollouts(
        str(TINY_VLLM_MODEL_DIR), processor, gpu_memory_utilization=0.01, seed=rank,
        process=(rank, rank, world), sharding="fsdp2",
    )  # fmt: skip
    engine.load_weights(policy)

    videos = SYNTHETIC_DIR / "videos"
    records = [
        video_record(f"r{rank}q{i}", videos / f"m_{20 + 2 * rank + i:04d}.mp4", "Which way?", mode="no_think")
        for i in range(2)
    ]
    kwargs = generation_kwargs(processor, 12)
    rollout = engine(None, processor, build_prompt_batch(processor, records, VIDEO), 4, kwargs)
    mask, sampled = rollout.completion_mask, rollout.sampler_logprobs
    report = {
        "world": world,
        "local": local_elements(policy),
        "full": sum(p.numel() for p in changed.parameters()),
        "tokens": int(mask.sum()),
        "diff_changed": max_abs_diff(policy_logprobs(changed, rollout, kwargs), sampled, mask),
        "diff_initial": max_abs_diff(policy_logprobs(initial, rollout, kwargs), sampled, mask),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    engine.close()  # vLLM's shutdown destroys the process group too


if __name__ == "__main__":
    main(Path(sys.argv[1]))
