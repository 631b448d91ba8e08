"""Run under `accelerate launch --num_processes 2 --cpu`: train the tiny model a few steps and
write this rank's parameter checksum, so the test can check the replicas stayed identical."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

from trainer.config import build_config, load_yaml
from trainer.loop import train


def main() -> None:
    config_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    outcome = train(build_config(load_yaml(config_path)))
    digest = hashlib.sha256()
    for name, param in sorted(outcome.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to(torch.float32).contiguous().numpy().tobytes())
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    (out_dir / f"rank{rank}.txt").write_text(f"{world} {outcome.steps} {digest.hexdigest()}")


if __name__ == "__main__":
    main()
