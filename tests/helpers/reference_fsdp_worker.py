"""Run under ``torchrun --nproc_per_node 2`` on CPUs (gloo): the frozen reference sharded with
FSDP2 by ``shard_reference_fsdp`` (with configs/accelerate_fsdp.yaml's wrapping) against a full
copy of the same model. Each rank writes how many of the reference's elements it holds locally
(before and after the forwards) and the largest log-prob difference per case: video, image and
text prompts, per-sample and shared-prefix paths, each rank on its own completions.

Both with the tiny model's tied embeddings and with an lm_head of its own (the embeddings then
become units of their own, as in a 7B model). And the trainable policy as accelerate's FSDP2
preparation wraps it: accumulated per-sample gradients against the full model's.

argv: OUT_DIR
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import yaml
from accelerate.utils import FullyShardedDataParallelPlugin
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from tests.helpers.exactness import relative_errors
from trainer.core.paths import REPO_ROOT, SYNTHETIC_DIR, TINY_MODEL_DIR
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.prompts import chat_messages
from trainer.model.loading import load_policy
from trainer.model.reference import register_vision_methods, shard_reference_fsdp
from trainer.rollout.hf import PromptBatch, RolloutBatch, build_prompt_batch
from trainer.update.logprobs import completion_logprobs

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)
OPTIONS = {"A": "left", "B": "right", "C": "up", "D": "down"}


@dataclass
class Rec:
    id: str
    question: str
    options: dict
    video: str | None = None
    image: str | None = None
    answer: str = "A"
    mode: str = "think"


def plugin_from_config() -> FullyShardedDataParallelPlugin:
    """The FSDP plugin accelerate builds from configs/accelerate_fsdp.yaml (its wrapping keys)."""
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "accelerate_fsdp.yaml").read_text())["fsdp_config"]
    return FullyShardedDataParallelPlugin(
        fsdp_version=cfg["fsdp_version"],
        auto_wrap_policy=cfg["fsdp_auto_wrap_policy"].lower(),
        # Unset in the config: the model's own _no_split_modules, as accelerate does.
        transformer_cls_names_to_wrap=cfg.get("fsdp_transformer_layer_cls_to_wrap"),
        reshard_after_forward=cfg["fsdp_reshard_after_forward"],
    )


def rollout(processor, media: str, seed: int) -> RolloutBatch:
    """Two left-padded prompts (``media``: video, image or none) with 2 random completions each."""
    records = []
    for i, question in enumerate(("Which way does the square move across the frame?", "Where does it go?")):
        name = f"m_000{i + 1}"
        records.append(
            Rec(
                name,
                question,
                OPTIONS,
                video=str(SYNTHETIC_DIR / "videos" / f"{name}.mp4") if media == "video" else None,
                image=str(SYNTHETIC_DIR / "images" / f"{name}.png") if media == "image" else None,
            )
        )
    if media == "text":
        convs = [chat_messages(r.question, r.options, r.mode) for r in records]
        prompt = PromptBatch(records=records, inputs=dict(build_inputs(processor, convs)))
    else:
        prompt = build_prompt_batch(processor, records, VIDEO)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 400, (4, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return RolloutBatch(prompt, 2, torch.where(mask.bool(), ids, 459), mask, [""] * 4, 0.0)


def local_elements(model: torch.nn.Module) -> int:
    return sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in model.parameters())


def policy_grad_diff(model: torch.nn.Module, processor, rank: int) -> dict[str, float]:
    """The trainable policy as accelerate's FSDP2 preparation wraps it, plus the trainer's
    ``register_vision_methods``: two accumulated per-sample backwards (the second one starts with
    the root resharded by the first backward) give the full model's gradients averaged over ranks.
    Returns each parameter's relative gradient error (``tests.helpers.exactness``) and the largest
    gradient element."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    full = copy.deepcopy(model).train()
    # What fsdp2_prepare_model reads of the accelerator, for a run without mixed precision.
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin_from_config()),
        mixed_precision="no",
        device=torch.device("cpu"),
        is_main_process=rank == 0,
    )
    policy = fsdp2_prepare_model(accelerator, copy.deepcopy(model).train())
    register_vision_methods(policy)
    for micro in range(2):
        batch = rollout(processor, "video", seed=100 + 10 * rank + micro)
        for m in (full, policy):
            completion_logprobs(m, batch, 0.9, shared_prefix=False).sum().backward()
    wanted, gotten = {}, {}
    for (name, want), got in zip(full.named_parameters(), policy.parameters(), strict=True):
        grad = want.grad.clone()
        dist.all_reduce(grad)
        wanted[name] = grad / dist.get_world_size()
        gotten[name] = got.grad.full_tensor()
    scale = max(grad.abs().max().item() for grad in wanted.values())
    return {"rel": relative_errors(gotten, wanted), "max_grad": scale}


def reference_report(model: torch.nn.Module, processor, rank: int) -> dict:
    """The sharded reference against a full copy of ``model``: local elements and log-prob diffs."""
    full = copy.deepcopy(model).eval().requires_grad_(False)
    sharded = shard_reference_fsdp(copy.deepcopy(model).eval().requires_grad_(False), plugin_from_config())
    before = local_elements(sharded)
    total = torch.tensor([before])
    dist.all_reduce(total)
    report = {
        "full_elements": sum(p.numel() for p in full.parameters()),
        "local_before": before,
        "local_sum": int(total.item()),
        "all_dtensor": all(isinstance(p, DTensor) for p in sharded.parameters()),
        # The classes sharded as units of their own (the root aside): the wrapping policy at work.
        "units": sorted({type(m).__name__ for m in list(sharded.modules())[1:] if isinstance(m, FSDPModule)}),
        "diffs": {},
    }
    # Per-sample first: the vision tower then runs before any forward of the root.
    for shared in (False, True):
        for media in ("video", "image", "text"):
            batch = rollout(processor, media, seed=10 * rank + len(media))
            with torch.no_grad():
                want = completion_logprobs(full, batch, 0.9, shared_prefix=shared)
                got = completion_logprobs(sharded, batch, 0.9, shared_prefix=shared)
            key = f"{media}/{'shared' if shared else 'per_sample'}"
            report["diffs"][key] = (got - want).abs().max().item()
    report["local_after"] = local_elements(sharded)
    return report


def untie(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with an lm_head of its own (as Qwen2.5-VL-7B), the same on every rank."""
    torch.manual_seed(0)
    model.config.tie_word_embeddings = model.config.text_config.tie_word_embeddings = False
    weight = model.lm_head.weight.detach().clone() + 0.05 * torch.randn_like(model.lm_head.weight)
    model.lm_head.weight = torch.nn.Parameter(weight)
    return model


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    model, processor = load_policy(TINY_MODEL_DIR)
    result = {"rank": rank, "world": dist.get_world_size()}
    result["policy_grad"] = policy_grad_diff(model, processor, rank)
    result["tied"] = reference_report(model, processor, rank)
    result["untied"] = reference_report(untie(model), processor, rank)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
