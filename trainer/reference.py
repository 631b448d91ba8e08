"""The engine around the policy: how accelerate is started, DeepSpeed's batch bookkeeping, and the
frozen reference model placed the way the engine places the policy.

DeepSpeed runs on CPUs too (``DS_ACCELERATOR=cpu``, gloo), which is how the tests run ZeRO-2/3
without a GPU: accelerate must then not be started with ``cpu=True`` (that turns DeepSpeed off)
and must be told the gloo backend (it has none for a CPU-only DeepSpeed launch and would then run
every process as rank 0).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from typing import Any

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
