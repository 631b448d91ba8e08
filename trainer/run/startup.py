"""A run's start-up, before its first step: the accelerator, the records, and the step context.

``trainer.run.loop`` calls these in order: ``make_accelerator`` (mixed precision, the engine's
checks, seed, threads), ``load_records`` and ``planned_steps`` (the data and how many steps it makes),
then ``build_step_context`` (policy, frozen reference and optimiser, prepared by accelerate, the
learning-rate schedule, the sampling and greedy generation settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainer.core.config import TrainConfig
from trainer.core.errors import ConfigError
from trainer.core.paths import resolve_repo_path
from trainer.data import load_dataset_use
from trainer.data.sampler import total_steps
from trainer.data.video import DecodeCache
from trainer.model.loading import generation_kwargs, load_policy
from trainer.model.reference import (
    accelerator_kwargs,
    check_dynamic_sampling,
    check_engine,
    configure_deepspeed,
    prepare_reference,
    register_vision_methods,
)
from trainer.model.trainable import set_trainable, trainable_parameters
from trainer.run.checkpoint import read_state
from trainer.step.context import StepContext
from trainer.step.lr_schedule import BudgetScheduler


def make_accelerator(cfg: TrainConfig) -> Any:
    """The run's ``accelerate.Accelerator`` (bf16 as ``cfg.model.bf16`` says), checked against the
    engine and dynamic sampling, with DeepSpeed's batch size, the seed and the torch thread count set."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(mixed_precision="bf16" if cfg.model.bf16 else "no", **accelerator_kwargs())
    check_engine(accelerator)
    check_dynamic_sampling(accelerator, cfg.grpo.dynamic_sampling)
    configure_deepspeed(accelerator, cfg.optim.per_device_train_batch_size)
    set_seed(cfg.run.seed)
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    return accelerator


def load_records(cfg: TrainConfig, workspace: Path) -> tuple[list[Any], list[Any]]:
    """The training records and the (possibly capped) evaluation records."""
    records = load_dataset_use(cfg.data.dataset_use, workspace, cfg.run.seed)
    eval_records = (
        load_dataset_use(cfg.data.eval_dataset_use, workspace, cfg.run.seed)
        if cfg.data.eval_dataset_use
        else []
    )
    if cfg.data.eval_max_records:
        eval_records = eval_records[: cfg.data.eval_max_records]
    return records, eval_records


def planned_steps(cfg: TrainConfig, num_records: int, world: int) -> int:
    """The optimiser steps the run plans: ``num_train_epochs`` over ``num_records`` at
    (per-device batch x accumulation x ``world`` processes) records a step, capped by ``max_steps``."""
    per_step = cfg.optim.per_device_train_batch_size * cfg.optim.gradient_accumulation_steps * world
    return total_steps(num_records, per_step, cfg.optim.num_train_epochs, cfg.optim.max_steps)


def build_step_context(
    accelerator: Any, cfg: TrainConfig, steps: int, cache: DecodeCache | None, resume_path: Path | None = None
) -> tuple[StepContext, dict[str, Any]]:
    """Policy, reference and optimiser, prepared by accelerate, and the learning-rate schedule over
    ``steps`` (and ``max_train_seconds``; carried on from the checkpoint at ``resume_path``), as the
    steps' context; and the greedy generation settings evaluation uses."""
    g = cfg.grpo
    check_reference_loading(g.grpo_beta > 0 and not cfg.model.lora_enable)
    dtype = "bf16" if cfg.model.bf16 else None

    def load() -> tuple[Any, Any]:
        path = resolve_repo_path(cfg.model.model_name_or_path)
        return load_policy(path, dtype=dtype, attn_implementation=cfg.model.attn_implementation)

    model, processor = load()
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    ref_model = None
    if g.grpo_beta > 0 and not cfg.model.lora_enable:
        # The frozen reference is the policy as loaded (the GRPO paper's pi_ref).
        ref_model = prepare_reference(accelerator, model, lambda: load()[0])
    model = set_trainable(model, cfg.model)
    optimizer = torch.optim.AdamW(
        trainable_parameters(model),
        lr=cfg.optim.learning_rate,
        betas=(cfg.optim.adam_beta1, cfg.optim.adam_beta2),
        weight_decay=cfg.optim.weight_decay,
        # One kernel per parameter instead of ~10 ops (as transformers' Trainer defaults to since
        # torch 2.8); DeepSpeed wraps the optimiser in its own partitioned update, so not there.
        fused=accelerator.distributed_type.name != "DEEPSPEED",
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # Set on the prepared optimiser: under DeepSpeed it is the engine's, which may hold a copy
    # (an offloaded optimiser) rather than the torch AdamW above.
    scheduler = BudgetScheduler(optimizer, cfg.optim, steps * g.num_iterations, cfg.run.max_train_seconds)
    if resume_path is not None:
        resumed = read_state(resume_path)
        scheduler.resume(resumed.step * g.num_iterations, resumed.schedule_progress)
    register_vision_methods(model)
    sample_kwargs = generation_kwargs(
        processor, g.generation_max_length, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k
    )
    greedy_kwargs = generation_kwargs(processor, g.generation_max_length, do_sample=False)
    if accelerator.num_processes > 1 and accelerator.distributed_type.name in ("DEEPSPEED", "FSDP"):
        # Sharded weights are gathered layer by layer in every forward: all processes must keep
        # stepping until the longest generation anywhere is done, or the collectives hang.
        sample_kwargs["synced_gpus"] = greedy_kwargs["synced_gpus"] = True
    ctx = StepContext(
        accelerator, model, ref_model, processor, cfg, optimizer, scheduler, sample_kwargs, cache=cache
    )
    return ctx, greedy_kwargs


def check_reference_loading(needs_reference: bool) -> None:
    """Refuse FSDP's "cpu ram efficient loading" when a separate reference model is needed.

    With it, transformers loads the checkpoint on local rank 0 only and leaves the other ranks'
    weights uninitialised for FSDP to broadcast when the policy is prepared; the frozen reference is
    a copy taken before that, never broadcast, so on those ranks it would be garbage and the KL
    silently wrong. (The same env vars transformers reads, so the check matches what it does.)
    """
    from accelerate.utils import str_to_bool

    fsdp = str_to_bool(os.environ.get("ACCELERATE_USE_FSDP", "false"))
    ram_efficient = str_to_bool(os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false"))
    if needs_reference and fsdp and ram_efficient:
        raise ConfigError(
            "FSDP with fsdp_cpu_ram_efficient_loading: true loads the weights on the first process "
            "only, so the frozen reference model (grpo_beta > 0) would be uninitialised on the others. "
            "Set fsdp_cpu_ram_efficient_loading: false in the accelerate config "
            "(configs/accelerate_fsdp.yaml does), or use LoRA (lora_enable: the reference is then the "
            "base model), or grpo_beta: 0."
        )
