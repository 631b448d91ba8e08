"""The engine around the policy: how accelerate is started, DeepSpeed's batch bookkeeping, and the
frozen reference model placed the way the engine places the policy.

DeepSpeed runs on CPUs too (``DS_ACCELERATOR=cpu``, gloo), which is how the tests run ZeRO-2/3
without a GPU: accelerate must then not be started with ``cpu=True`` (that turns DeepSpeed off)
and must be told the gloo backend (it has none for a CPU-only DeepSpeed launch and would then run
every process as rank 0).

FSDP is different: accelerate (1.15) makes a process FSDP only on an accelerator device
(``AcceleratorState`` sets ``DistributedType.FSDP`` only for MULTI_GPU-like types), so on CPUs an
FSDP launch silently becomes gloo DDP or one process alone; :func:`check_engine` refuses that. The
FSDP2 sharding of the reference itself runs on CPUs under plain torch.distributed (tests).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from typing import Any

from trainer.core.errors import ConfigError

logger = logging.getLogger(__name__)


def uses_deepspeed() -> bool:
    """True when ``accelerate launch`` was given a DeepSpeed config (the env var it sets)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def accelerator_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``Accelerator`` that pick the devices and process group.

    Without CUDA, ``cpu=True`` makes accelerate run several CPU processes with gloo (MULTI_CPU)
    instead of silently training each process alone; under DeepSpeed it would switch DeepSpeed off,
    so there the gloo backend is named instead."""
    import torch
    from accelerate.utils import InitProcessGroupKwargs

    if torch.cuda.is_available():
        return {"cpu": False}
    if uses_deepspeed():
        return {"cpu": False, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}
    return {"cpu": True}


def check_engine(accelerator: Any) -> None:
    """Refuse an FSDP launch that accelerate did not start as FSDP (on CPUs it starts gloo DDP, or
    each process alone, without a word: the run would neither shard nor say so)."""
    from accelerate.utils import str_to_bool

    asked = str_to_bool(os.environ.get("ACCELERATE_USE_FSDP", "false"))
    started = accelerator.distributed_type.name
    if asked and started != "FSDP":
        raise ConfigError(
            f"the accelerate config asks for FSDP but accelerate started {started}: it runs FSDP only "
            "on GPUs (or other accelerator devices). Without one use configs/accelerate_ddp.yaml, or "
            "DeepSpeed on CPU processes (DS_ACCELERATOR=cpu, configs/accelerate_zero3_cpu.yaml)."
        )


def check_dynamic_sampling(accelerator: Any, dynamic_sampling: bool) -> None:
    """Refuse ``dynamic_sampling`` on several processes under DeepSpeed or FSDP.

    Every forward and backward there is collective (ZeRO-3/FSDP gather weights; ZeRO-2 reduces
    gradients in each backward), but dynamic sampling keeps a different number of groups on each
    process per round, so one computes log-probs or updates a micro-batch the others don't and all
    wait forever (seen: ZeRO-3 on 2 CPU processes with configs/tiny_cpu.yaml). DDP is unaffected:
    it synchronises only the step's last backward.
    """
    sharded = accelerator.distributed_type.name in ("DEEPSPEED", "FSDP")
    if dynamic_sampling and sharded and accelerator.num_processes > 1:
        raise ConfigError(
            f"dynamic_sampling is not supported with {accelerator.distributed_type.name} on several "
            "processes (each keeps a different number of groups, and their collective forwards and "
            "backwards would wait on each other forever): set dynamic_sampling: false, or use DDP "
            "(configs/accelerate_ddp.yaml)."
        )


def configure_deepspeed(accelerator: Any, per_device_batch_size: int) -> None:
    """Fill DeepSpeed's batch sizes, which accelerate derives from a dataloader this loop does not
    have (``accelerator.prepare`` refuses "auto" values without one).

    The loop does its own accumulation (it tells accelerate which backward ends a step), so
    DeepSpeed counts one micro-batch per step: the rollout batch of one process.
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    config = plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = per_device_batch_size
    config["gradient_accumulation_steps"] = 1
    config["train_batch_size"] = per_device_batch_size * accelerator.num_processes


def prepare_reference(accelerator: Any, model: Any, load: Callable[[], Any]) -> Any:
    """The frozen reference (the policy as loaded), placed like the policy.

    Under DeepSpeed ZeRO-3 it becomes a DeepSpeed inference engine with the run's stage-3 config,
    so its parameters are sharded over the processes like the policy's (as TRL's
    ``prepare_deepspeed``). It is loaded afresh with ``load()``: transformers then builds it under
    ``zero.Init`` (already sharded) as it did the policy, whose parameters are by now empty
    placeholders that a copy would not bring along. ZeRO-1/2 shard only optimizer states and
    gradients, which a frozen model has none of, so there each process holds a whole copy
    (stage 0), as under DDP.
    """
    if accelerator.distributed_type.name == "FSDP":
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        return shard_reference_fsdp(ref, accelerator.state.fsdp_plugin, _fsdp_mesh(accelerator))
    plugin = accelerator.state.deepspeed_plugin if uses_deepspeed() else None
    stage = plugin.deepspeed_config.get("zero_optimization", {}).get("stage") if plugin else None
    ref = (load() if stage == 3 else copy.deepcopy(model)).eval().requires_grad_(False)
    if plugin is None:
        return ref.to(accelerator.device)
    import deepspeed

    config = copy.deepcopy(plugin.deepspeed_config)
    zero = config.setdefault("zero_optimization", {})
    if stage == 3:
        hidden = _hidden_size(ref)
        if hidden:
            # TRL's sizes: buckets of one hidden x hidden matrix; small parameters stay whole.
            zero["reduce_bucket_size"] = hidden * hidden
            zero["stage3_param_persistence_threshold"] = 10 * hidden
            zero["stage3_prefetch_bucket_size"] = int(0.9 * hidden * hidden)
    else:
        zero["stage"] = 0
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    engine, *_ = deepspeed.initialize(model=ref, config=config)
    engine.eval()
    logger.info("reference model prepared with DeepSpeed ZeRO stage %s", zero["stage"])
    return engine


def _hidden_size(model: Any) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "hidden_size", None)


# Methods that run part of the model outside its forward (the per-sample log-prob path encodes
# each video once this way, trainer.update.logprobs.shared_vision_outputs).
VISION_METHODS = ("get_video_features", "get_image_features")


def shard_reference_fsdp(ref: Any, plugin: Any, mesh: Any = None) -> Any:
    """Shard the frozen ``ref`` with FSDP2 ``fully_shard`` as accelerate shards the policy, in place.

    The same units as the policy (the plugin's auto-wrap policy: each decoder layer and vision
    block), untied input and output embeddings each their own unit (accelerate carves them out
    too), the rest in the root; the plugin's mixed precision, CPU offload and ``mesh`` (None: all
    processes). Unlike the policy's root and tail, every unit reshards after its forward: a frozen
    model has no backward to reshard them, so they would otherwise stay gathered for good. Each
    process then holds about 1/world of every parameter (DTensor shards) and gathers one unit at a
    time. TRL's ``prepare_fsdp`` wraps only the root under FSDP2, which gathers the whole model at
    once in every forward.
    """
    if plugin.fsdp_version != 2:
        raise ConfigError(
            f"fsdp_version {plugin.fsdp_version}: the trainer supports FSDP2 only (fsdp_version: 2, as "
            "configs/accelerate_fsdp.yaml): FSDP1 cannot run the vision tower outside the model's "
            "forward, which the per-sample log-prob path does."
        )
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy, get_module_children_bottom_up
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {
        "reshard_after_forward": True,
        "offload_policy": plugin.cpu_offload,
        # fully_shard does not accept None for mp_policy.
        "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy(),
        "mesh": mesh,
    }
    is_unit = fsdp2_prepare_auto_wrap_policy(plugin, ref)
    units = [m for m in get_module_children_bottom_up(ref)[:-1] if is_unit is not None and is_unit(m)]
    embed, head = ref.get_input_embeddings(), ref.get_output_embeddings()
    if head is not None and embed.weight is not head.weight:
        # A tied weight must stay in one unit (torch refuses a parameter in two), the root here.
        units += [embed, head]
    for module in units:
        fully_shard(module, **kwargs)
    fully_shard(ref, **kwargs)
    register_vision_methods(ref)
    logger.info("reference model sharded with FSDP2 (%d units + root)", len(units))
    return ref


def register_vision_methods(model: Any) -> None:
    """Let FSDP2 gather the root's parameters (the vision tower's patch embedding and merger live
    there) when :data:`VISION_METHODS` are called outside the forward; a no-op for other models.

    Without it such a call meets the root's sharded parameters (DTensor) and fails.
    """
    from torch.distributed.fsdp import register_fsdp_forward_method

    for name in VISION_METHODS:
        if hasattr(model, name):
            register_fsdp_forward_method(model, name)


def _fsdp_mesh(accelerator: Any) -> Any:
    """The device mesh accelerate shards the policy over (None: all processes), as TRL picks it."""
    mesh = getattr(accelerator, "torch_device_mesh", None)
    return mesh[tuple(accelerator.parallelism_config.fsdp_dim_names)] if mesh is not None else None
