"""Run under ``torchrun --nproc_per_node 2`` on CPUs (gloo): the policy wrapped as accelerate's FSDP2
preparation wraps it (configs/accelerate_fsdp.yaml's units), then read back whole by
``trainer.full_weights`` against an unsharded copy of the same weights. accelerate cannot start an
FSDP run on CPUs (trainer/reference.py), so this is the FSDP2 part of the vLLM weight sync that a
CPU can run.

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

from tests.helpers.reference_fsdp_worker import local_elements, plugin_from_config, untie
from trainer.full_weights import full_weights
from trainer.modeling import load_policy
from trainer.paths import TINY_MODEL_DIR


def report(model: torch.nn.Module, rank: int) -> dict:
    """Shard a copy of ``model``; the largest difference of what full_weights reads back from it."""
    want = {name: t.detach().clone() for name, t in model.state_dict().items()}
    # What fsdp2_prepare_model reads of the accelerator, for a run without mixed precision.
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin_from_config()),
        mixed_precision="no",
        device=torch.device("cpu"),
        is_main_process=rank == 0,
    )
    policy = fsdp2_prepare_model(accelerator, copy.deepcopy(model))
    with full_weights(policy, "fsdp2") as weights:
        got = dict(weights)
    return {
        "local": local_elements(policy),
        "full": sum(p.numel() for p in model.parameters()),
        "names_match": sorted(got) == sorted(want),
        "max_diff": max((got[n] - want[n]).abs().max().item() for n in want),
        "shapes_match": all(got[n].shape == want[n].shape for n in want),
    }


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    model, _ = load_policy(TINY_MODEL_DIR)
    torch.manual_seed(0)  # the same trained-looking weights on every rank
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    result = {
        "world": dist.get_world_size(),
        "tied": report(model, rank),
        "untied": report(untie(model), rank),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
