"""Run under ``accelerate launch --config_file configs/accelerate_zero3_cpu.yaml`` (2 CPU processes,
DS_ACCELERATOR=cpu): the policy prepared by DeepSpeed ZeRO-3, plain and with LoRA, read back whole
by ``trainer.model.full_weights`` against what the unsharded model holds (under LoRA: peft's own
``merge_and_unload`` of the same weights).

argv: OUT_DIR. Writes OUT_DIR/rank{r}.json.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from tests.helpers.lora import trained_lora
from trainer.core.paths import TINY_MODEL_DIR
from trainer.model.full_weights import full_weights
from trainer.model.loading import load_policy
from trainer.model.reference import accelerator_kwargs, configure_deepspeed


def report(accelerator: Accelerator, model: torch.nn.Module, want: dict[str, torch.Tensor]) -> dict:
    """Prepare ``model`` with ZeRO-3; how much of it this process holds, and the largest
    difference of what full_weights reads back (twice: a LoRA merge is undone in between)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    engine, _ = accelerator.prepare(model, optimizer)
    policy = accelerator.unwrap_model(engine)
    diffs = []
    for _ in range(2):
        with full_weights(policy, "zero3") as weights:
            got = {name: tensor.clone() for name, tensor in weights}
        assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
        diffs.append(max((got[n] - want[n]).abs().max().item() for n in want))
    return {
        "local": sum(p.ds_tensor.numel() for p in policy.parameters()),
        "full": sum(p.ds_numel for p in policy.parameters()),
        "diffs": diffs,
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    # Loaded before accelerate registers its ZeRO-3 config: transformers would otherwise build it
    # already partitioned, and this test wants the whole weights to compare against.
    model, _ = load_policy(TINY_MODEL_DIR)
    accelerator = Accelerator(mixed_precision="no", **accelerator_kwargs())
    configure_deepspeed(accelerator, 1)
    torch.manual_seed(0)  # the same trained-looking weights on every rank
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    result = {"world": accelerator.num_processes, "stage": accelerator.state.deepspeed_plugin.zero_stage}
    want = {name: t.detach().clone() for name, t in model.state_dict().items()}
    result["plain"] = report(accelerator, copy.deepcopy(model).requires_grad_(True), want)

    lora = trained_lora(model)
    merged = copy.deepcopy(lora).merge_and_unload()
    want = {name: t.detach().clone() for name, t in merged.state_dict().items()}
    result["lora"] = report(accelerator, lora, want)
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
