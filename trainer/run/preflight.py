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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.core.config import TrainConfig
from trainer.core.errors import ConfigError
from trainer.core.paths import default_workspace, is_hub_id, is_missing_local_path, resolve_repo_path
from trainer.core.video_config import VideoConfig
from trainer.data import load_dataset_use
from trainer.data.prompts import NO_THINK, THINK
from trainer.model.families import ModelFamily, family_for, family_of_model, family_of_path
from trainer.step.cost import MemoryEstimate, ModelShape, memory_estimate, sequences_per_step

logger = logging.getLogger(__name__)

PREFLIGHT_QUESTIONS = 4
# At least this share of completions cut before </answer> is a warning: a few long samples at
# temperature 1.0 are normal, a quarter cut means the budget is too small for the answer format.
CUT_WARN_FRACTION = 0.25
# Most completions (not all: sampling varies) must use the dataset's think/no_think shape.
MODE_MATCH_FRACTION = 0.5


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
class StepCost:
    prompt_tokens: float  # mean per question, video tokens included
    video_tokens: float  # mean per question
    completion_tokens: float  # mean per completion in the sample
    completion_tokens_max: int
    sequences_per_step: int
    device: str
    device_memory_gib: float | None
    memory: MemoryEstimate
    parameters: int
    trainable_parameters: int


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
    not), and the pixel knobs against its visual token; None for a hub id not in the local cache,
    which transformers resolves when it loads."""
    if not os.path.isdir(model_path) and is_hub_id(model_path):
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(model_path, local_files_only=True)
        except (OSError, ValueError):
            return None
        family = family_for(getattr(config, "model_type", None), model_path)
    else:
        family = family_of_path(model_path)
    if video.min_pixels < family.pixels_per_token:
        raise ConfigError(
            f"min_pixels ({video.min_pixels}) must be >= {family.pixels_per_token}: one visual token of "
            f"{family.name} covers {family.pixels_per_token} pixels"
        )
    return family


def check_vllm_model(model_path: str) -> None:
    """A local model folder vLLM cannot serve here (architecture, or a head size its CPU attention
    has no kernel for) is refused now, not when the trainer starts its engine. Needs no vLLM in
    this process: the studio runs vLLM trainers from another environment (studio.environments)."""
    import torch
    from transformers import AutoConfig

    from trainer.rollout.vllm_engine import check_servable

    if os.path.isdir(model_path):
        check_servable(AutoConfig.from_pretrained(model_path), on_cuda=torch.cuda.is_available())


def check_launch(cfg: TrainConfig) -> LaunchCheck:
    """Every check a launch runs, without loading the model or decoding videos.

    Raises ConfigError or DataError naming the field, dataset or file.
    """
    workspace = Path(cfg.data.workspace) if cfg.data.workspace else default_workspace()
    model_path = check_model_path(cfg.model.model_name_or_path)
    check_model_family(model_path, cfg.video)
    train = load_dataset_use(cfg.data.dataset_use, workspace, cfg.run.seed, check_videos=False)
    train_modes = tuple(sorted({r.mode for r in train}))
    eval_count = 0
    if cfg.data.eval_dataset_use.strip():
        evals = load_dataset_use(cfg.data.eval_dataset_use, workspace, cfg.run.seed, check_videos=False)
        eval_modes = tuple(sorted({r.mode for r in evals}))
        if eval_modes != train_modes:
            raise ConfigError(
                f"eval_dataset_use {cfg.data.eval_dataset_use!r} is {'+'.join(eval_modes)} but dataset_use "
                f"{cfg.data.dataset_use!r} is {'+'.join(train_modes)}: evaluate on a set with the same "
                "answer format (a name with no_think expects <answer> only)"
            )
        eval_count = len(evals)
    if cfg.grpo.temporal_grpo and any(r.video is None for r in train):
        raise ConfigError("temporal_grpo shuffles video frames, but dataset_use has image records")
    if cfg.grpo.rollout_backend == "vllm":
        check_vllm_model(model_path)
    return LaunchCheck(workspace, model_path, train, eval_count, train_modes)


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
    from trainer.score.scoring import score_rollouts

    launch = launch or check_launch(cfg)
    g = cfg.grpo
    device = "cuda" if torch.cuda.is_available() else None
    torch.manual_seed(cfg.run.seed)
    model, processor = load_policy(
        launch.model_path,
        dtype="bf16" if cfg.model.bf16 else None,
        device=device,
        attn_implementation=cfg.model.attn_implementation,
    )
    model = set_trainable(model, cfg.model)  # only to count what would learn
    pool = launch.train_records
    records = random.Random(cfg.run.seed).sample(pool, min(questions, len(pool)))
    prompt = build_prompt_batch(processor, records, cfg.video)
    kwargs = generation_kwargs(
        processor, g.generation_max_length, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k
    )
    rollout = generate_rollouts(model, processor, prompt, g.grpo_sample_size, kwargs)
    scores = score_rollouts(
        rollout.texts, records, g.grpo_sample_size, g.format_reward_weight, g.accuracy_reward_weight
    )
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
    )
    return PreflightReport(**{**report.__dict__, "warnings": learning_warnings(cfg, report)})


def step_cost(
    cfg: TrainConfig, model: Any, processor: Any, inputs: dict[str, Any], lengths: list[float]
) -> StepCost:
    """Tokens, sequences and memory of one step, from the processor's real prompt tensors."""
    import torch

    mask = inputs["attention_mask"]
    family = family_of_model(model)
    video_id = processor.tokenizer.convert_tokens_to_ids(family.video_token)
    image_id = processor.tokenizer.convert_tokens_to_ids(family.image_token)
    visual = torch.isin(inputs["input_ids"], torch.tensor([video_id, image_id])) & mask.bool()
    prompt_tokens = float(mask.sum(dim=1).float().mean())
    g, o = cfg.grpo, cfg.optim
    text_cfg = getattr(model.config, "text_config", model.config)
    shape = ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        hidden_size=int(text_cfg.hidden_size),
        num_layers=int(text_cfg.num_hidden_layers),
        vocab_size=int(text_cfg.vocab_size),
    )
    memory = memory_estimate(
        shape,
        bytes_per_param=2 if cfg.model.bf16 else 4,
        has_reference=g.grpo_beta > 0 and not cfg.model.lora_enable,
        sequences_per_micro_batch=o.per_device_train_batch_size * g.grpo_sample_size,
        tokens_per_sequence=int(round(prompt_tokens)) + g.generation_max_length,
        completion_tokens=g.generation_max_length,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
    )
    device, available = _device()
    return StepCost(
        prompt_tokens=prompt_tokens,
        video_tokens=float(visual.sum(dim=1).float().mean()),
        completion_tokens=sum(lengths) / max(len(lengths), 1),
        completion_tokens_max=int(max(lengths, default=0)),
        sequences_per_step=sequences_per_step(
            o.per_device_train_batch_size, o.gradient_accumulation_steps, g.grpo_sample_size
        ),
        device=device,
        device_memory_gib=available,
        memory=memory,
        parameters=shape.parameters,
        trainable_parameters=shape.trainable_parameters,
    )


def _device() -> tuple[str, float | None]:
    """Where training would run and how much memory it has (GiB; None when unknown)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"GPU ({props.name})", props.total_memory / 2**30
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = None
    return "CPU", ram


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


MEMORY_NOTE = (
    "exact: weights, gradients and AdamW states of the trainable parameters, the reference copy "
    "when grpo_beta > 0; estimated: activations of one micro-batch (34 x hidden bytes per token "
    "per layer, 2 with gradient_checkpointing) and float32 logits; not counted: the generation "
    "KV cache, vision-tower activations, allocator overhead"
)


def format_size(gib: float) -> str:
    """GiB as ``1.50 GiB`` or, below one, ``12.3 MiB``."""
    return f"{gib:.2f} GiB" if gib >= 1 else f"{gib * 1024:.1f} MiB"


def memory_text(cost: StepCost) -> str:
    """``on CPU: 60.0 MiB of 23.50 GiB = weights ... + activations ~...``."""
    m = cost.memory
    of = f" of {format_size(cost.device_memory_gib)}" if cost.device_memory_gib else ""
    return (
        f"on {cost.device}: {format_size(m.total_gib)}{of} = weights {format_size(m.weights_gib)} + "
        f"gradients {format_size(m.gradients_gib)} + AdamW states {format_size(m.optimizer_gib)} + "
        f"reference copy {format_size(m.reference_gib)} + activations ~{format_size(m.activations_gib)}"
    )


def format_report(report: PreflightReport) -> str:
    """The pre-flight as plain text (what ``vgrpo train --check`` prints)."""
    c = report.cost
    lines = [
        f"config: valid; {len(report.launch.train_records)} training records "
        f"({'+'.join(report.launch.train_modes)}), {report.launch.eval_records} eval records",
        f"model: {report.launch.model_path} ({c.parameters / 1e6:.1f}M parameters, "
        f"{c.trainable_parameters / 1e6:.1f}M trainable)",
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
