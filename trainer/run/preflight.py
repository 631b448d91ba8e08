"""Before paying for a run: does the config launch, and can the run learn?

Two layers, both used by the studio's Check config and by ``vgrpo train --check``:

- :func:`check_launch` runs every check a launch runs (the datasets exist and load, the eval set has
  the training set's think/no_think mode, the model folder exists). Launch calls the same function,
  so a config that passes Check never fails to start for a reason Check could have seen.
- :func:`run_preflight` then loads the chosen model, samples ``grpo_sample_size`` completions for a
  few questions of the chosen dataset with the run's own generation settings (the rollout and
  scoring code the trainer uses), and reports the rewards, their spread within groups, the cost of
  a step, and warnings in words, each naming the knob to turn, when the run cannot learn.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.core.config import TrainConfig
from trainer.core.errors import ConfigError
from trainer.core.paths import default_workspace, is_hub_id, is_missing_local_path, resolve_repo_path
from trainer.core.video_config import VideoConfig
from trainer.data import load_dataset_use
from trainer.data.modes import check_same_mode
from trainer.data.prompts import NO_THINK, THINK
from trainer.model.families import ModelFamily, family_for, family_of_model, family_of_path
from trainer.model.processor_files import check_processor_files
from trainer.model.trainable import lora_targets
from trainer.run.cluster_check import check_cluster
from trainer.run.preflight_cost import (  # noqa: F401  (MEMORY_NOTE, format_size, memory_text: re-exported)
    MEMORY_NOTE,
    StepCost,
    format_size,
    memory_text,
    published_memory_text,
    step_cost,
)
from trainer.run.reward_check import check_reward_functions

logger = logging.getLogger(__name__)

PREFLIGHT_QUESTIONS = 4
# At least this share of completions cut before </answer> is a warning: a few long samples at
# temperature 1.0 are normal, a quarter cut means the budget is too small for the answer format.
CUT_WARN_FRACTION = 0.25
# Most completions (not all: sampling varies) must use the dataset's think/no_think shape.
MODE_MATCH_FRACTION = 0.5
# Fewer visual tokens than a 2 x 2 grid per frame and a frame has no "where" in it (the shipped CPU
# presets' 3136 px is exactly 2 x 2 on 28 px tokens, and 1 token on Qwen3-VL's 32 px ones).
MIN_TOKENS_PER_FRAME = 4


@dataclass(frozen=True)
class LaunchCheck:
    """What the launch checks found."""

    workspace: Path
    model_path: str
    train_records: list[Any]  # MCQRecord
    eval_records: int
    train_modes: tuple[str, ...]


@dataclass(frozen=True)
class PreflightWarning:
    """A reason the run may not learn, naming the config field to change."""

    knob: str
    message: str


@dataclass(frozen=True)
class SampledCompletion:
    record_id: str
    mode: str
    correct_letter: str
    group_index: int
    text: str
    tokens: int
    is_cut: bool  # stopped by generation_max_length, not by the end-of-turn token
    format_reward: float
    accuracy_reward: float
    total_reward: float


@dataclass(frozen=True)
class PreflightReport:
    launch: LaunchCheck
    completions: list[SampledCompletion]
    group_size: int
    format_rate: float
    accuracy_rate: float
    group_spread: list[float]  # total-reward std of each question's group
    cost: StepCost
    warnings: list[PreflightWarning] = field(default_factory=list)
    family: ModelFamily | None = None  # the model's family, as loaded
    # What the family runs with here, in words (Qwen3.5: which linear-attention implementation).
    notes: list[str] = field(default_factory=list)

    @property
    def can_learn(self) -> bool:
        return not self.warnings

    @property
    def groups_with_spread(self) -> int:
        return sum(1 for s in self.group_spread if s > 0)


# ---- launch checks --------------------------------------------------------------------------------


def check_model_path(model_name_or_path: str) -> str:
    """The model location as the trainer will load it; raises ConfigError when it cannot be.

    Mirrors ``trainer.model.loading.load_policy``: a local folder must hold a ``config.json``; a path
    that can only be local must exist; a hub id (``Qwen/Qwen2.5-VL-3B-Instruct``) is left to
    transformers, which loads it from its cache or the hub.
    """
    path = resolve_repo_path(model_name_or_path)
    if os.path.isdir(path):
        if not (Path(path) / "config.json").is_file():
            raise ConfigError(f"model_name_or_path: {path} is not a model folder (no config.json)")
    elif is_missing_local_path(path):
        raise ConfigError(f"model_name_or_path: no such folder {path}")
    return path


def check_model_family(model_path: str, video: VideoConfig) -> ModelFamily | None:
    """The checkpoint's family (ConfigError listing the supported ones when its ``model_type`` is
    not), a local folder's processor files against its weights (patch size, processor class), and
    the pixel knobs against its visual token; None for a hub id not in the local cache, which
    transformers resolves when it loads. Reads config and processor files only, no weights."""
    if not os.path.isdir(model_path) and is_hub_id(model_path):
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(model_path, local_files_only=True)
        except (OSError, ValueError):
            return None
        family = family_for(getattr(config, "model_type", None), model_path)
    else:
        family = family_of_path(model_path)
        check_processor_files(model_path, family)
    if video.min_pixels < family.pixels_per_token:
        side = int(round(family.pixels_per_token**0.5))
        raise ConfigError(
            f"min_pixels ({video.min_pixels}) must be >= {family.pixels_per_token}: one visual token of "
            f"{family.name} covers {side} x {side} = {family.pixels_per_token} pixels; raise min_pixels "
            f"(and max_pixels) to at least {family.pixels_per_token}"
        )
    return family


def check_vllm_model(model_path: str, dtype: str | None = None) -> None:
    """A local model folder vLLM cannot serve here (architecture, or a head size its CPU attention
    has no kernel for) is refused now, not when the trainer starts its engine. Needs no vLLM in
    this process: the studio runs vLLM trainers from another environment (studio.environments)."""
    import torch
    from transformers import AutoConfig

    from trainer.rollout.vllm_engine import check_servable

    if os.path.isdir(model_path):
        check_servable(AutoConfig.from_pretrained(model_path), on_cuda=torch.cuda.is_available(), dtype=dtype)


def check_launch(cfg: TrainConfig, reward_roots: Sequence[Path] | None = None) -> LaunchCheck:
    """Every check a launch runs, without loading the model or decoding videos.

    ``reward_roots``: the folders a reward file may live in (the studio passes its workspace; None:
    anywhere, as from a terminal). Raises ConfigError or DataError naming the field, dataset or file.
    """
    workspace = Path(cfg.data.workspace) if cfg.data.workspace else default_workspace()
    model_path = check_model_path(cfg.model.model_name_or_path)
    family = check_model_family(model_path, cfg.video)
    if family is not None and cfg.model.lora_enable:
        lora_targets(cfg.model, family)  # ConfigError when the family's required targets are left out
    train = load_dataset_use(cfg.data.dataset_use, workspace, cfg.run.seed, check_videos=False)
    train_modes = tuple(sorted({r.mode for r in train}))
    eval_count = 0
    if cfg.data.eval_dataset_use.strip():
        evals = load_dataset_use(cfg.data.eval_dataset_use, workspace, cfg.run.seed, check_videos=False)
        eval_modes = tuple(sorted({r.mode for r in evals}))
        check_same_mode(
            "eval_dataset_use",
            cfg.data.eval_dataset_use,
            eval_modes,
            "dataset_use",
            cfg.data.dataset_use,
            train_modes,
        )
        eval_count = len(evals)
    if cfg.grpo.temporal_grpo and any(r.video is None for r in train):
        raise ConfigError("temporal_grpo shuffles video frames, but dataset_use has image records")
    if cfg.grpo.rollout_backend == "vllm":
        check_vllm_model(model_path, "bfloat16" if cfg.model.bf16 else "float32")
    check_reward_functions(cfg, train, reward_roots)
    check_cluster(cfg, workspace)  # launcher ray: the database, the cluster, the nodes' view
    return LaunchCheck(workspace, model_path, train, eval_count, train_modes)


def small_dataset_notes(num_records: int, batch_size: int) -> list[str]:
    """What the run does with a training set smaller than a batch, in words; empty when a batch fits.

    Such a run trains (``trainer.data.sampler.next_batch`` fills the batch from the next epochs), so
    this is a note, not a warning: only the epoch count and the repeats differ from what a user expects.
    """
    if batch_size <= num_records:
        return []
    return [
        f"dataset_use has {num_records} records, fewer than per_device_train_batch_size {batch_size}: "
        f"each batch holds every record {batch_size / num_records:.3g} times on average "
        f"(an epoch is {num_records / batch_size:.3g} steps)"
    ]


# ---- sampling -------------------------------------------------------------------------------------


def run_preflight(
    cfg: TrainConfig, questions: int = PREFLIGHT_QUESTIONS, launch: LaunchCheck | None = None
) -> PreflightReport:
    """Check, then sample G completions for ``questions`` questions of the training set with the
    run's model and generation settings, and judge whether the run can learn."""
    import torch

    from trainer.model.loading import generation_kwargs, load_policy
    from trainer.model.trainable import set_trainable
    from trainer.rollout.hf import build_prompt_batch, generate_rollouts
    from trainer.score.reward_functions import RewardFunctionError, load_rewards, workspace_search
    from trainer.score.scoring import score_rollouts

    launch = launch or check_launch(cfg)
    g = cfg.grpo
    device = "cuda" if torch.cuda.is_available() else None
    torch.manual_seed(cfg.run.seed)
    try:
        model, processor = load_policy(
            launch.model_path,
            dtype="bf16" if cfg.model.bf16 else None,
            device=device,
            attn_implementation=cfg.model.attn_implementation,
        )
    except ConfigError as exc:
        raise _with_published_estimate(cfg, launch.model_path, exc) from exc
    model = set_trainable(model, cfg.model)  # only to count what would learn
    pool = launch.train_records
    records = random.Random(cfg.run.seed).sample(pool, min(questions, len(pool)))
    prompt = build_prompt_batch(processor, records, cfg.video)
    kwargs = generation_kwargs(
        processor, g.generation_max_length, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k
    )
    rollout = generate_rollouts(model, processor, prompt, g.grpo_sample_size, kwargs)
    try:
        rewards = load_rewards(g.reward_specs(), search=workspace_search(cfg))
        scores = score_rollouts(rollout.texts, records, g.grpo_sample_size, rewards)
    except RewardFunctionError as exc:
        raise ConfigError(f"grpo.rewards, on the sampled completions: {exc}") from exc
    eos = set(kwargs["eos_token_id"])
    completions = []
    for i, text in enumerate(rollout.texts):
        ids = rollout.completion_ids[i][rollout.completion_mask[i].bool()].tolist()
        record = records[i // g.grpo_sample_size]
        completions.append(
            SampledCompletion(
                record_id=str(record.id),
                mode=record.mode,
                correct_letter=record.answer,
                group_index=i % g.grpo_sample_size,
                text=text,
                tokens=len(ids),
                is_cut=not (ids and ids[-1] in eos),
                format_reward=float(scores.format[i]),
                accuracy_reward=float(scores.accuracy[i]),
                total_reward=float(scores.total[i]),
            )
        )
    spread = scores.total.view(-1, g.grpo_sample_size).std(dim=1, unbiased=False).tolist()
    cost = step_cost(cfg, model, processor, prompt.inputs, rollout.lengths.tolist())
    family = family_of_model(model)
    del model  # the studio runs this in its own process: give the memory back before it returns
    if device == "cuda":
        torch.cuda.empty_cache()
    report = PreflightReport(
        launch=launch,
        completions=completions,
        group_size=g.grpo_sample_size,
        format_rate=float(scores.format.mean()),
        accuracy_rate=float(scores.accuracy.mean()),
        group_spread=[float(s) for s in spread],
        cost=cost,
        family=family,
        notes=[
            *small_dataset_notes(len(pool), cfg.optim.per_device_train_batch_size),
            *family.runtime_notes(),
        ],
    )
    return PreflightReport(**{**report.__dict__, "warnings": learning_warnings(cfg, report)})


def _with_published_estimate(cfg: TrainConfig, model_path: str, exc: ConfigError) -> ConfigError:
    """The error of a model that did not load; for a well-known hub id (not in the local cache,
    no network) it also says what the run would need, from the checkpoint's published architecture."""
    from trainer.model.families.published import PUBLISHED

    if model_path not in PUBLISHED:
        return exc
    return ConfigError(f"{exc}; {published_memory_text(cfg, model_path)}")


# ---- judging --------------------------------------------------------------------------------------


def learning_warnings(cfg: TrainConfig, report: PreflightReport) -> list[PreflightWarning]:
    """Why the sampled rollouts say the run cannot learn (empty when it can)."""
    warnings = []
    done = report.completions
    n = len(done)
    cut = [c for c in done if c.is_cut and "</answer>" not in c.text]
    if n and len(cut) / n >= CUT_WARN_FRACTION:
        longest = max(c.tokens for c in done)
        warnings.append(
            PreflightWarning(
                "generation_max_length",
                f"{len(cut)} of {n} completions were cut at generation_max_length "
                f"({cfg.grpo.generation_max_length} tokens) before </answer>, so they score no format "
                f"or accuracy reward: raise generation_max_length (the sample ran to {longest} tokens).",
            )
        )
    for mode, other in ((THINK, NO_THINK), (NO_THINK, THINK)):
        of_mode = [c for c in done if c.mode == mode]
        if not of_mode:
            continue
        writes_think = sum(1 for c in of_mode if "<think>" in c.text)
        matching = writes_think if mode == THINK else len(of_mode) - writes_think
        if matching / len(of_mode) < MODE_MATCH_FRACTION:
            expected = "<think>…</think> <answer>…</answer>" if mode == THINK else "<answer>…</answer> only"
            warnings.append(
                PreflightWarning(
                    "dataset_use",
                    f"dataset_use is {mode} mode (answers as {expected}) but the model wrote "
                    f"<think> in {writes_think} of {len(of_mode)} completions: the format reward stays "
                    f"low; pick a {other} dataset for this model or a model trained for {mode}.",
                )
            )
    family = report.family
    if family is not None and cfg.video.max_pixels < MIN_TOKENS_PER_FRAME * family.pixels_per_token:
        side = int(round(family.pixels_per_token**0.5))
        warnings.append(
            PreflightWarning(
                "max_pixels",
                f"max_pixels {cfg.video.max_pixels} gives each frame fewer than {MIN_TOKENS_PER_FRAME} "
                f"visual tokens of {family.name} ({side} x {side} px each): the model cannot tell where "
                f"things are within a frame; raise max_pixels (and min_pixels) to at least "
                f"{MIN_TOKENS_PER_FRAME * family.pixels_per_token}.",
            )
        )
    if report.group_spread and report.groups_with_spread == 0:
        warnings.append(
            PreflightWarning(
                "grpo_sample_size",
                f"every reward within each of the {len(report.group_spread)} sampled groups is equal "
                f"(all {report.completions[0].total_reward:.2f}): GRPO's advantages are all 0 and the "
                "run cannot learn; fix the warnings above, or raise temperature or grpo_sample_size.",
            )
        )
    return warnings


def format_report(report: PreflightReport) -> str:
    """The pre-flight as plain text (what ``vgrpo train --check`` prints)."""
    c = report.cost
    lines = [
        f"config: valid; {len(report.launch.train_records)} training records "
        f"({'+'.join(report.launch.train_modes)}), {report.launch.eval_records} eval records",
        f"model: {report.launch.model_path} ({c.parameters / 1e6:.1f}M parameters, "
        f"{c.trainable_parameters / 1e6:.1f}M trainable)",
        *(f"  {note}" for note in report.notes),
        "",
        f"sampled {len(report.completions)} completions ({report.group_size} per question):",
    ]
    for s in report.completions:
        cut = " [cut]" if s.is_cut else ""
        lines.append(
            f"  {s.record_id} #{s.group_index} (gold {s.correct_letter}) reward {s.total_reward:.2f} "
            f"(format {s.format_reward:.0f}, accuracy {s.accuracy_reward:.0f}), {s.tokens} tokens{cut}: "
            f"{s.text[:120]!r}"
        )
    spread = ", ".join(f"{s:.2f}" for s in report.group_spread)
    lines += [
        f"format rate {report.format_rate:.2f}, accuracy {report.accuracy_rate:.2f}; reward spread "
        f"within groups (std): {spread} ({report.groups_with_spread} of {len(report.group_spread)} groups "
        "have an advantage)",
        "",
        "cost of a step:",
        f"  prompt tokens per question: {c.prompt_tokens:.0f} ({c.video_tokens:.0f} of them video)",
        f"  completion tokens: {c.completion_tokens:.1f} on average, {c.completion_tokens_max} at most",
        f"  sequences per step: {c.sequences_per_step}",
        f"  memory estimate {memory_text(c)}",
        f"  ({MEMORY_NOTE})",
        "",
    ]
    if report.warnings:
        lines += [f"WARNING ({w.knob}): {w.message}" for w in report.warnings]
    else:
        lines.append("can learn: completions are well formed and rewards differ within groups")
    return "\n".join(lines)
