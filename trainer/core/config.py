"""The training run's configuration: one dataclass per concern, every field documented.

The same fields make the YAML file (one section per concern), the `vgrpo train` flags (one flat
``--name value`` per field) and the studio's form, so none of them keeps a hand-written list.
Seed knob names stay verbatim (``grpo_alpha``, ``grpo_beta``, ...).

Values from all three are parsed by ``trainer.core.config_types.parse_value`` and each dataclass checks
its field types in ``__post_init__``: nothing is coerced (2.5 for an integer, "abc" for a number and
an empty required field are errors naming the field), and the cross-field rules live beside the
fields they relate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from trainer.core.config_types import (
    check_field_types,
    field_help,
    field_type,
    is_optional,
    load_yaml,  # noqa: F401 - part of this module's API (configs are read with it)
    parse_value,
    raise_all,
)
from trainer.core.errors import ConfigError
from trainer.core.launch_config import LaunchConfig
from trainer.core.paths import TINY_MODEL_DIR
from trainer.core.reward_spec import ACCURACY, RewardList, RewardSpec, seed_specs
from trainer.core.run_config import RunConfig
from trainer.core.video_config import VideoConfig

_help = field_help


# The learning-rate schedules trainer.update.schedule computes (the curves of transformers' schedulers
# of these names, run over the steps or the time budget, whichever is further along).
LR_SCHEDULER_TYPES: tuple[str, ...] = ("constant", "constant_with_warmup", "linear", "cosine")


@dataclass
class ModelConfig:
    """Which model is trained and which of its parts learn."""

    model_name_or_path: str = field(
        default=str(TINY_MODEL_DIR),
        metadata=_help(
            "Hub id (e.g. Qwen/Qwen2.5-VL-3B-Instruct) or local path of a model of a supported family."
        ),
    )
    bf16: bool = field(default=False, metadata=_help("Train in bfloat16 (GPUs with bf16 support)."))
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations in backward: less memory, ~30% slower.")
    )
    attn_implementation: str = field(
        default="sdpa", metadata=_help("Attention kernel: sdpa, eager or flash_attention_2.")
    )
    shared_prefix: bool = field(
        default=True,
        metadata=_help(
            "Run each prompt once per group (rollout prefill and loss forwards) and let its G "
            "completions attend to its cached keys/values; off: every completion re-reads its prompt. "
            "sdpa and eager only (flash_attention_2 falls back to per-sample, with a warning)."
        ),
    )
    tune_mm_llm: bool = field(default=True, metadata=_help("Train the language model."))
    tune_mm_mlp: bool = field(default=True, metadata=_help("Train the vision-to-language merger MLP."))
    tune_mm_vision: bool = field(default=False, metadata=_help("Train the vision tower."))
    lora_enable: bool = field(
        default=False,
        metadata=_help("Train LoRA adapters (peft) on the language model instead of full weights."),
    )
    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA numerator: scale = lora_alpha / lora_r."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA branch."))
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        metadata=_help(
            "Comma-separated module names that get LoRA adapters; this default list means the model "
            "family's own (Qwen3.5 adds its linear-attention projections)."
        ),
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.model_name_or_path.strip():
            raise ConfigError("model_name_or_path is empty: name a hub id or a local model folder")
        if self.attn_implementation not in ("sdpa", "eager", "flash_attention_2"):
            raise ConfigError(
                f"attn_implementation must be sdpa, eager or flash_attention_2, "
                f"got {self.attn_implementation!r}"
            )
        if not (self.tune_mm_llm or self.tune_mm_mlp or self.tune_mm_vision or self.lora_enable):
            raise ConfigError("nothing to train: set tune_mm_llm, tune_mm_mlp, tune_mm_vision or lora_enable")
        if self.attn_implementation == "flash_attention_2" and not self.bf16:
            # flash-attn kernels exist for fp16/bf16 only; float32 weights fail at the first forward.
            raise ConfigError("attn_implementation flash_attention_2 needs bf16: true (or use sdpa)")
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            raise ConfigError(f"lora_r and lora_alpha must be > 0, got {self.lora_r}, {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_enable and not self.lora_target_modules.strip():
            raise ConfigError("lora_target_modules is empty: name the modules that get LoRA adapters")


@dataclass
class DataConfig:
    """What the model trains and is evaluated on."""

    dataset_use: str = field(
        default="synthetic_motion_train",
        metadata=_help("Registered datasets or annotation paths, comma-separated; `name%50` samples 50%."),
    )
    eval_dataset_use: str = field(
        default="",
        metadata=_help("Held-out datasets evaluated at each eval_steps and at the end (empty: none)."),
    )
    eval_max_records: int = field(
        default=200, metadata=_help("At most this many eval records per evaluation (0: all).")
    )
    workspace: str = field(
        default="", metadata=_help("Workspace folder whose datasets.json names datasets (empty: default).")
    )
    video_cache_mb: float = field(
        default=1024.0,
        metadata=_help("Memory for decoded videos kept between epochs (MB; 0: decode every time)."),
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.dataset_use.strip():
            raise ConfigError("dataset_use is empty: name at least one dataset")
        if self.eval_max_records < 0:
            raise ConfigError(f"eval_max_records must be >= 0, got {self.eval_max_records}")
        if self.video_cache_mb < 0:
            raise ConfigError(f"video_cache_mb must be >= 0, got {self.video_cache_mb}")


@dataclass
class GRPOConfig:
    """Group sampling, rewards and the GRPO objective."""

    grpo_alpha: float = field(
        default=0.5,
        metadata=_help(
            "Reward scale: multiplies the group-relative advantages in the clipped policy term, "
            "so it weighs the reward signal against the grpo_beta KL term (see trainer.update.grpo)."
        ),
    )
    grpo_beta: float = field(
        default=0.1, metadata=_help("KL penalty weight to the frozen reference (0: no reference model).")
    )
    format_reward_weight: float = field(default=0.3, metadata=_help("Weight of the format reward."))
    accuracy_reward_weight: float = field(default=0.7, metadata=_help("Weight of the accuracy reward."))
    rewards: RewardList = field(
        default_factory=RewardList,
        metadata=_help(
            "Reward functions and weights, a list of {name, function, weight}: the built-ins format and "
            "accuracy, or your own as FILE.py:NAME or package.module:NAME, called as "
            "fn(completions, records, **context) -> list[float | None]. Empty: the two weights above. "
            "When set, it replaces them."
        ),
    )
    grpo_sample_size: int = field(
        default=4, metadata=_help("Completions sampled per question (the group size G).")
    )
    generation_max_length: int = field(
        default=256, metadata=_help("Most new tokens per completion; longer ones are cut.")
    )
    temperature: float = field(default=1.0, metadata=_help("Sampling temperature for rollouts."))
    top_p: float = field(default=1.0, metadata=_help("Nucleus sampling threshold (1.0: off)."))
    top_k: int = field(default=0, metadata=_help("Top-k sampling (0: off)."))
    epsilon: float = field(default=0.2, metadata=_help("Lower clip range: ratio >= 1 - epsilon."))
    epsilon_high: float = field(
        default=0.0, metadata=_help("Upper clip range: ratio <= 1 + epsilon_high (0: same as epsilon).")
    )
    num_iterations: int = field(
        default=1, metadata=_help("Policy updates per batch of rollouts (mu in the GRPO paper).")
    )
    scale_rewards: str = field(
        default="group",
        metadata=_help("Advantage scaling: group (std per group), batch (batch std), none (Dr. GRPO)."),
    )
    loss_type: str = field(
        default="grpo",
        metadata=_help("Loss aggregation: grpo (per-sequence mean), bnpo (token mean), dr_grpo."),
    )
    entropy_coeff: float = field(
        default=0.0,
        metadata=_help(
            "Entropy bonus weight (verl's entropy_coeff): keeps answers the policy stopped sampling "
            "from dying out (0: off)."
        ),
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata=_help(
            "DAPO's dynamic sampling: drop question groups whose rewards all agree (zero advantage) "
            "and sample fresh questions until the batch is full again."
        ),
    )
    max_sampling_rounds: int = field(
        default=3,
        metadata=_help(
            "Dynamic sampling: most generation rounds per micro-batch (verl's max_num_gen_batches)."
        ),
    )
    temporal_grpo: bool = field(
        default=False,
        metadata=_help(
            "T-GRPO (Video-R1): also sample on shuffled frames; reward correct answers that "
            "need the frame order."
        ),
    )
    temporal_margin: float = field(
        default=0.8, metadata=_help("T-GRPO: bonus when acc(ordered) >= margin x acc(shuffled).")
    )
    temporal_bonus: float = field(
        default=0.3, metadata=_help("T-GRPO: added to the accuracy reward of correct ordered completions.")
    )
    rollout_backend: str = field(
        default="hf",
        metadata=_help(
            "Who samples the rollouts: hf (transformers generate) or vllm (a vLLM engine in each "
            "training process, given the full weights after every step, gathered under ZeRO-3/FSDP2; "
            "needs vLLM installed, see README)."
        ),
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3,
        metadata=_help(
            "vLLM: fraction of GPU memory its weights and KV cache may take, shared with training "
            "(on vLLM's CPU build: the fraction of host memory for its KV cache). 0-1."
        ),
    )
    vllm_importance_sampling_cap: float = field(
        default=3.0,
        metadata=_help(
            "vLLM: truncated importance sampling - weight each token by min(exp(logp_policy - "
            "logp_vllm), cap) to correct the sampler/trainer mismatch (TRL's; 0: off)."
        ),
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.grpo_alpha <= 0:
            # alpha scales the advantages: 0 removes the reward signal, < 0 trains away from it.
            raise ConfigError(f"grpo_alpha must be > 0 (it scales the advantages), got {self.grpo_alpha}")
        if self.grpo_sample_size < 2:
            raise ConfigError(
                f"grpo_sample_size must be >= 2 (advantages need a group), got {self.grpo_sample_size}"
            )
        if self.grpo_beta < 0:
            raise ConfigError(f"grpo_beta must be >= 0, got {self.grpo_beta}")
        if self.generation_max_length < 1:
            raise ConfigError(f"generation_max_length must be >= 1, got {self.generation_max_length}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.epsilon < 1 or not 0 <= self.epsilon_high < 10:
            raise ConfigError(
                f"epsilon must be in (0, 1) and epsilon_high in [0, 10), "
                f"got {self.epsilon}, {self.epsilon_high}"
            )
        if self.max_sampling_rounds < 1:
            raise ConfigError(f"max_sampling_rounds must be >= 1, got {self.max_sampling_rounds}")
        if self.entropy_coeff < 0:
            raise ConfigError(f"entropy_coeff must be >= 0, got {self.entropy_coeff}")
        if self.num_iterations < 1:
            raise ConfigError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError(f"scale_rewards must be group, batch or none, got {self.scale_rewards!r}")
        if self.loss_type not in ("grpo", "bnpo", "dr_grpo"):
            raise ConfigError(f"loss_type must be grpo, bnpo or dr_grpo, got {self.loss_type!r}")
        if self.format_reward_weight < 0 or self.accuracy_reward_weight < 0:
            raise ConfigError(
                f"format_reward_weight and accuracy_reward_weight must be >= 0, "
                f"got {self.format_reward_weight}, {self.accuracy_reward_weight}"
            )
        if not self.rewards and self.format_reward_weight + self.accuracy_reward_weight <= 0:
            raise ConfigError(
                "format_reward_weight + accuracy_reward_weight must be > 0: with both at 0 every "
                "reward is 0 and nothing is learned"
            )
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0: off), got {self.top_k}")
        if self.temporal_margin < 0 or self.temporal_bonus < 0:
            raise ConfigError(
                f"temporal_margin and temporal_bonus must be >= 0, "
                f"got {self.temporal_margin}, {self.temporal_bonus}"
            )

    def reward_specs(self) -> tuple[RewardSpec, ...]:
        """The rewards that score a completion: ``rewards`` when set, else the seed's two knobs."""
        return tuple(self.rewards) or seed_specs(self.format_reward_weight, self.accuracy_reward_weight)

    def accuracy_weight(self) -> float:
        """The accuracy reward's weight in the total (0 when the list leaves it out): T-GRPO's bonus
        is added to the accuracy reward, so it enters the total with this weight."""
        return next(
            (spec.weight for spec in self.reward_specs() if spec.name == ACCURACY and not spec.function),
            0.0,
        )


@dataclass
class OptimConfig:
    """Optimiser, schedule and how long to train."""

    learning_rate: float = field(default=2e-5, metadata=_help("Peak learning rate (AdamW)."))
    num_train_epochs: float = field(default=1.0, metadata=_help("Passes over the training data."))
    max_steps: int = field(default=-1, metadata=_help("Stop after this many optimiser steps (-1: epochs)."))
    per_device_train_batch_size: int = field(
        default=1, metadata=_help("Questions per device per step (each sampled grpo_sample_size times).")
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("Micro-batches accumulated before each optimiser step.")
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata=_help(
            "Learning-rate schedule: constant (no warmup), constant_with_warmup, linear or cosine "
            "(decay to 0 at the last step, or at the end of max_train_seconds if that comes first)."
        ),
    )
    warmup_ratio: float = field(
        default=0.0,
        metadata=_help(
            "Fraction of the run with linear warmup: of the steps, or of max_train_seconds when "
            "the time budget is further along."
        ),
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    adam_beta1: float = field(default=0.9, metadata=_help("AdamW beta1."))
    adam_beta2: float = field(default=0.999, metadata=_help("AdamW beta2."))
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping norm (0: off)."))

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps must be -1 or > 0, got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ConfigError("num_train_epochs must be > 0 when max_steps is -1")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ConfigError("per_device_train_batch_size and gradient_accumulation_steps must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr_scheduler_type not in LR_SCHEDULER_TYPES:
            raise ConfigError(
                f"lr_scheduler_type must be one of {', '.join(LR_SCHEDULER_TYPES)}, "
                f"got {self.lr_scheduler_type!r}"
            )
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ConfigError(
                f"adam_beta1 and adam_beta2 must be in [0, 1), got {self.adam_beta1}, {self.adam_beta2}"
            )
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError(
                f"weight_decay and max_grad_norm must be >= 0, got {self.weight_decay}, {self.max_grad_norm}"
            )


# YAML section name -> dataclass. Order is the order of the studio's groups.
SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "video": VideoConfig,
    "grpo": GRPOConfig,
    "optim": OptimConfig,
    "run": RunConfig,
    "launch": LaunchConfig,
}


@dataclass
class TrainConfig:
    """Everything one training run needs; saved with every checkpoint and into the run database."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        sections = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        # asdict keeps the rewards list a tuple (of dicts); YAML and JSON want a list.
        sections["grpo"]["rewards"] = self.grpo.rewards.to_config()
        return sections

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        return {k: v for section in self.to_dict().values() for k, v in section.items()}


def field_index() -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat field name -> (section, Field). Field names are unique across sections."""
    index: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in index:
                raise AssertionError(f"config field {f.name} appears in two sections")
            index[f.name] = (section, f)
    return index


def flatten(values: dict[str, Any]) -> dict[str, Any]:
    """A flat or sectioned mapping -> flat ``{field: value}``; unknown keys are an error naming the key."""
    index = field_index()
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                if sub_key not in index or index[sub_key][0] != key:
                    raise ConfigError(f"unknown config key {key}.{sub_key}")
                flat[sub_key] = sub_value
        elif key in index:
            flat[key] = value
        else:
            raise ConfigError(f"unknown config key {key!r}")
    return flat


def build_config(values: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from a flat or sectioned mapping (later keys win).

    Every wrong value is reported, not only the first: a form with three typos says all three at
    once (one ConfigError, the problems joined by "; "), then each section's own checks run."""
    index = field_index()
    kwargs: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    problems: list[str] = []
    for key, value in flatten(values).items():
        section, f = index[key]
        cls = SECTIONS[section]
        try:
            kwargs[section][key] = parse_value(key, value, field_type(f, cls), is_optional(f, cls))
        except ConfigError as exc:
            problems.append(str(exc))
    raise_all(problems)
    sections: dict[str, Any] = {}
    for section, kw in kwargs.items():
        try:
            sections[section] = SECTIONS[section](**kw)
        except ConfigError as exc:
            problems.append(str(exc))
        except (TypeError, ValueError) as exc:  # a validator outside ConfigError (e.g. a library's)
            problems.append(str(exc))
    raise_all(problems)
    try:
        return TrainConfig(**sections)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply ``overrides`` (flat or sectioned) on ``base``; the result is flat."""
    return {**flatten(base), **flatten(overrides)}
