"""The policy's full, current weights on every training process, however the training engine holds
them: what each process's colocated vLLM engine loads after an optimiser step
(:mod:`trainer.rollout.vllm_engine`).

Every process samples its own questions with its own engine, so every engine needs the whole
model, not the process's shard. How to get it depends on who holds the parameters (TRL's
``VLLMGeneration.sync_weights`` does the same):

- ``none``: one process, DDP, DeepSpeed ZeRO-1/2. The unwrapped module's parameters are whole on
  every process (ZeRO-1/2 shard only optimiser state and gradients), so they are read as they are.
- ``zero3``: DeepSpeed ZeRO-3 leaves each process 1/world of every parameter. Each one is gathered
  on its own (``deepspeed.zero.GatheredParameters``, a collective), copied, and released before the
  next; vLLM's loader holds the copies until it has all of a layer's, so the peak is about one
  layer's full weights beyond the shards, whatever the model's size. Under LoRA
  the adapters can only be merged into whole weights, so there the whole model is gathered at once
  (as TRL does): that needs the full model's memory on every process.
- ``fsdp2``: FSDP2 parameters are DTensor shards; ``full_tensor()`` all-gathers one at a time.
  FSDP1 and FSDP + LoRA are refused before the run (:func:`weight_sharding`, ``make_sampler``).

The gathers are collectives: every process must read the weights at the same time, in the same
order (the loop syncs every engine after every step on every process).

Names come out as a plain ``...ForConditionalGeneration`` state dict names them (peft's
prefixes and adapter tensors removed, adapters merged), which is what vLLM's loader reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

from trainer.core.errors import ConfigError

__all__ = ["SHARDINGS", "full_weights", "is_peft_model", "weight_sharding"]

SHARDINGS = ("none", "zero3", "fsdp2")


def weight_sharding(accelerator: Any) -> str:
    """How ``accelerator``'s engine holds the policy's parameters: one of :data:`SHARDINGS`."""
    kind = accelerator.distributed_type.name
    if kind == "DEEPSPEED":
        return "zero3" if accelerator.state.deepspeed_plugin.zero_stage == 3 else "none"
    if kind == "FSDP":
        version = getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1)
        if version != 2:
            raise ConfigError(
                f"fsdp_version {version}: rollout_backend vllm gathers FSDP2 weights only (fsdp_version: 2, "
                "as configs/accelerate_fsdp.yaml)"
            )
        return "fsdp2"
    return "none"


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "merge_adapter") and hasattr(model, "get_base_model")


@contextmanager
def full_weights(policy: Any, sharding: str) -> Iterator[Iterator[tuple[str, torch.Tensor]]]:
    """``with full_weights(policy, sharding) as weights:`` (name, full tensor) of ``policy`` (the
    unwrapped module) in state-dict order, with LoRA adapters merged while the block runs.

    Consume ``weights`` entirely inside the block, on every process: the merge is undone, and a
    whole-model gather released, when the block ends, and a reader may hold on to the tensors until
    it has all of a layer's weights."""
    if sharding not in SHARDINGS:
        raise ValueError(f"sharding must be one of {', '.join(SHARDINGS)}, got {sharding!r}")
    is_peft = is_peft_model(policy)
    if is_peft and sharding == "fsdp2":
        raise ConfigError("rollout_backend vllm with LoRA under FSDP is not supported: use DDP or DeepSpeed")
    gather_all = is_peft and sharding == "zero3"
    with _zero3_gathered(list(policy.parameters())) if gather_all else nullcontext():
        if is_peft:
            policy.merge_adapter()
        try:
            yield _tensors(policy, is_peft, "none" if gather_all else sharding)
        finally:
            if is_peft:
                policy.unmerge_adapter()


def _tensors(policy: Any, is_peft: bool, sharding: str) -> Iterator[tuple[str, torch.Tensor]]:
    # keep_vars: the Parameter objects themselves, which ZeRO-3 gathers (their .data is a shard).
    for name, tensor in policy.state_dict(keep_vars=True).items():
        if is_peft:
            # The adapters are merged in; peft keeps the untrained copy of a module it trains in
            # full (modules_to_save) as "original_module", next to the trained "modules_to_save".
            if "lora_" in name or "original_module" in name:
                continue
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            name = name.replace(".modules_to_save.default", "")
        if sharding == "zero3":
            # A copy: the gathered storage is DeepSpeed's to free once the context ends.
            with _zero3_gathered([tensor]):
                tensor = tensor.detach().clone()
        elif sharding == "fsdp2" and hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        yield name, tensor.detach()


def _zero3_gathered(params: list[torch.Tensor]) -> AbstractContextManager[Any]:
    """DeepSpeed's read-only gather of ZeRO-3 ``params`` (a collective); parameters ZeRO-3 does
    not hold pass through."""
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
