"""Load a policy and its processor, and the generation settings every sampler shares.

The model class and the special tokens come from the checkpoint's family adapter
(:mod:`trainer.model.families`, chosen by its ``config.json`` ``model_type``). Works the same for
the embedded tiny models and the real checkpoints: every id is read from the checkpoint's
tokenizer, never hard-coded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError
from trainer.core.file_modes import give_default_modes
from trainer.core.paths import is_hub_id, is_missing_local_path
from trainer.model.families import ModelFamily, family_of_path
from trainer.model.hub import unavailable_model
from trainer.model.processor_files import check_processor_files

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}  # fmt: skip


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return getattr(torch, _DTYPES[dtype.lower()])
    raise ConfigError(f"dtype must be 'auto', one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}")


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_adapter_checkpoint(path: str | os.PathLike) -> bool:
    """True for a peft (LoRA) folder: adapters and trained modules, the base model elsewhere."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


RUN_CONFIG = "train_config.yaml"  # the resolved TrainConfig a checkpoint carries (trainer.run.checkpoint)


def _base_problem(base: str) -> str | None:
    """Why ``base`` cannot be a LoRA folder's base model (None: a model folder or a hub id)."""
    if os.path.isdir(base):
        if (Path(base) / "config.json").is_file():
            return None
        if is_adapter_checkpoint(base):
            return "is a LoRA checkpoint itself (export it merged first: vgrpo export --merge)"
        return "is not a model folder (no config.json)"
    return None if is_hub_id(base) else "is not there"


def run_base_model(path: Path) -> str | None:
    """``model_name_or_path`` of the run config saved in checkpoint ``path`` (None: none saved)."""
    import yaml

    try:
        config = yaml.safe_load((path / RUN_CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    section = config.get("model") if isinstance(config, dict) else None
    value = section.get("model_name_or_path") if isinstance(section, dict) else None
    return str(value) if value else None


def adapter_base_model(path: str | os.PathLike) -> str:
    """The base model a LoRA folder was trained on, as a loadable path or hub id: its
    adapter_config.json's ``base_model_name_or_path``, else (that folder moved, or the name was
    relative to another working folder) the ``model_name_or_path`` of the run config saved next to
    the adapters. ConfigError naming the checkpoint and what each one says when neither loads."""
    from trainer.core.paths import resolve_repo_path

    folder = Path(path)
    config_file = folder / ADAPTER_CONFIG
    try:
        base = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{config_file}: unreadable ({exc})") from exc
    candidates = {
        f"{ADAPTER_CONFIG} base_model_name_or_path": base,
        f"{RUN_CONFIG} model_name_or_path": run_base_model(folder),
    }
    problems = []
    for where, name in candidates.items():
        if not name:
            continue
        resolved = resolve_repo_path(str(name))
        problem = _base_problem(resolved)
        if problem is None:
            if problems:
                logger.warning(
                    "LoRA checkpoint %s: base model from %s (%s)", folder, where, "; ".join(problems)
                )
            return resolved
        problems.append(f"{where} {resolved} {problem}")
    if not problems:
        raise ConfigError(f"{config_file}: no base_model_name_or_path, and no {RUN_CONFIG} beside it")
    raise ConfigError(f"LoRA checkpoint {folder}: no base model to load it onto: {'; '.join(problems)}")


def load_policy(
    model_name_or_path: str | os.PathLike,
    dtype: Any = None,
    device: Any = None,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` with transformers' own loaders (a hub id or a local folder).

    A LoRA checkpoint (a folder with adapter_config.json) is loaded with peft onto its base model
    and merged, so every caller gets a plain model of its family with the trained weights.
    ``dtype``: None keeps float32 (what CPU training wants), ``"auto"`` the checkpoint's own, else a
    torch.dtype or a name such as ``"bf16"``. ``device``: where the model goes (None: stays on
    CPU). Nothing is downloaded when the path is a local folder; hub ids use the local cache or the
    network as transformers does.
    """
    from safetensors import SafetensorError
    from transformers import AutoProcessor

    path = str(model_name_or_path)
    if is_missing_local_path(path):
        raise ConfigError(f"model_name_or_path: no such folder {path}")
    if os.path.isdir(path):
        # The name the model keeps is what peft writes as a LoRA checkpoint's base model: a path
        # relative to the trainer's working folder would not load from the studio's.
        path = os.path.abspath(path)
    kwargs: dict[str, Any] = {"dtype": _resolve_dtype(dtype) or "float32"}
    family = family_of_path(path)
    check_processor_files(path, family)  # before any weight loads: a processor of another model
    model_class = family.load_class()
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        if is_adapter_checkpoint(path):
            from peft import PeftModel

            base_path = adapter_base_model(path)
            try:
                base = model_class.from_pretrained(base_path, **kwargs)
            except OSError as exc:
                raise unavailable_model(base_path, exc) from exc
            model = PeftModel.from_pretrained(base, path).merge_and_unload()
        else:
            model = model_class.from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, SafetensorError) as exc:
        # A hub model not (all) in the cache and no way to download it: transformers says so in an
        # OSError of several lines; a weights file that is not safetensors (a cut copy) raises
        # SafetensorError. The Check handler and the CLI need a ConfigError naming the field.
        raise unavailable_model(path, exc) from exc
    if device is not None:
        model = model.to(device)
    logger.info(
        "loaded %s: %.2fM parameters, %s", path, sum(p.numel() for p in model.parameters()) / 1e6, model.dtype
    )
    return model, processor


def export_merged(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, dtype: Any = "auto") -> Path:
    """Write ``checkpoint`` (LoRA or full) as one merged Hugging Face folder in ``out_dir``: full
    weights (safetensors), config and processor files, loadable by plain ``from_pretrained`` (and
    vLLM). The checkpoint's train_config.yaml comes along so evaluation uses its video settings."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"export: {out} exists and is not empty")
    model, processor = load_policy(checkpoint, dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    train_config = Path(checkpoint) / "train_config.yaml"
    if train_config.is_file():
        shutil.copyfile(train_config, out / train_config.name)
    give_default_modes(out)  # as a checkpoint's: safetensors writes model.safetensors 0600
    return out


def _token_ids(processor: Any, tokens: tuple[str, ...]) -> list[int]:
    tokenizer = getattr(processor, "tokenizer", processor)
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in tokens if t in vocab]


def processor_family(processor: Any) -> ModelFamily:
    """The family a processor belongs to: its ``name_or_path``'s config (the folder it came from)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return family_of_path(tokenizer.name_or_path)


def vision_suppress_token_ids(processor: Any, family: ModelFamily | None = None) -> list[int]:
    """Ids of the tokens a policy must never sample (vision specials, a new turn), sorted."""
    family = family or processor_family(processor)
    return sorted(set(_token_ids(processor, family.never_sampled_tokens)))


def generation_kwargs(
    processor: Any,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    do_sample: bool = True,
    family: ModelFamily | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``model.generate``: stop at the family's end-of-turn tokens, pad with
    its pad token, never emit its vision special tokens. ``top_k`` 0 means no top-k cut.
    ``family``: the processor's (read from its folder's config.json) unless given."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ConfigError(f"temperature must be > 0 when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    family = family or processor_family(processor)
    eos = _token_ids(processor, family.end_of_turn_tokens)
    if not eos:
        raise ConfigError(
            f"tokenizer has none of {', '.join(family.end_of_turn_tokens)}: not a {family.name} tokenizer"
        )
    pad = _token_ids(processor, (family.pad_token,))
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "eos_token_id": eos,
        "pad_token_id": pad[0] if pad else eos[-1],
        "suppress_tokens": vision_suppress_token_ids(processor, family),
        # Qwen's checkpoints ship repetition_penalty 1.05; GRPO's log-probs assume plain sampling.
        "repetition_penalty": 1.0,
    }
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
    else:
        # Greedy: neutral values so a checkpoint's sampling defaults do not trigger warnings.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs
