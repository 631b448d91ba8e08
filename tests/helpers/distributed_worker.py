"""Run under `accelerate launch --num_processes 2 --cpu`: train the tiny model a few steps and
write what this rank ended with (parameter checksum, grad norms, evaluation), so the test can
check the replicas stayed identical, learned, and evaluated like one process would."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from trainer import metrics_keys as mk
from trainer.config import build_config, load_yaml
from trainer.loop import train


def checksum(model: torch.nn.Module) -> str:
    """sha256 over every (name, float32 value) of ``model``'s state dict, in name order."""
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    config_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    outcome = train(build_config(load_yaml(config_path)))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    report = {
        "world": world,
        "steps": outcome.steps,
        "checksum": checksum(outcome.model),
        "grad_norms": [h[mk.GRAD_NORM] for h in outcome.history],
        "eval": outcome.eval.records if outcome.eval is not None else None,
        "final_checkpoint": str(outcome.final_checkpoint),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
