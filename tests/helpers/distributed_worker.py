"""Run under `accelerate launch --num_processes 2 --cpu`: train the tiny model a few steps and
write what this rank ended with (parameter checksum, grad norms, evaluation), so the test can
check the replicas stayed identical, learned, and evaluated like one process would."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from trainer.core import metrics_keys as mk
from trainer.core.config import build_config, load_yaml
from trainer.run.loop import train


def checksum(model: torch.nn.Module) -> str:
    """sha256 over every (name, float32 value) of ``model``'s state dict, in name order."""
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    """``worker.py CONFIG OUT_DIR [resume]``: with ``resume``, train again from the run's
    checkpoint-1 to the end and report that too (the same process: one launch, both runs)."""
    config_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    values = load_yaml(config_path)
    outcome = train(build_config(values))
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
    if sys.argv[3:] == ["resume"]:
        # Its own output folder and database: the first run already holds a checkpoint-2.
        values["run"] = {
            **values["run"],
            "resume_from_checkpoint": str(outcome.output_dir / "checkpoint-1"),
            "output_dir": str(out_dir / "resumed"),
            "db": f"sqlite:///{out_dir / 'resumed.db'}",
        }
        resumed = train(build_config(values))
        report["resumed_history"] = resumed.history
        report["resumed_checksum"] = checksum(resumed.model)
    report["history"] = outcome.history
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
