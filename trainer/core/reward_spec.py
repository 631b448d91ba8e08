"""The ``grpo.rewards`` list: which reward functions score a completion, with what weight.

A config value, so it lives in core (the functions themselves are imported by
``trainer.score.reward_functions``). It is written three ways, all parsed by
:meth:`RewardList.parse_config`: a YAML list of mappings (the config file), the same list as JSON or
YAML text (a command-line flag, ``--rewards '[{name: format, weight: 0.3}]'``), or rows of
``[name, function, weight]`` (the Train tab's table). An empty list means "the seed's two knobs"
(``format_reward_weight``, ``accuracy_reward_weight``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from trainer.core.errors import ConfigError

FORMAT = "format"
ACCURACY = "accuracy"
BUILTIN_REWARDS = (FORMAT, ACCURACY)
# A metric key segment: reward/<name> must be a plain name in every sink (TensorBoard, W&B, the DB).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class RewardSpec:
    """One entry of ``grpo.rewards``."""

    name: str  # the metric is reward/<name>; a built-in's name when ``function`` is None
    weight: float  # its weight in the total reward (>= 0)
    function: str | None = None  # FILE.py:NAME or package.module:NAME; None for a built-in

    @property
    def label(self) -> str:
        """``brevity (my_rewards.py:brevity)`` / ``format (built-in)``: how messages name it."""
        return f"{self.name} ({self.function or 'built-in'})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "function": self.function, "weight": self.weight}


def seed_specs(format_weight: float, accuracy_weight: float) -> tuple[RewardSpec, ...]:
    """The list the seed's two knobs (``format_reward_weight``, ``accuracy_reward_weight``) stand for."""
    return (RewardSpec(FORMAT, format_weight), RewardSpec(ACCURACY, accuracy_weight))


def split_reference(ref: str) -> tuple[str, str]:
    """``"my_rewards.py:brevity"`` -> ``("my_rewards.py", "brevity")``; ValueError when malformed.
    The last colon splits, so a Windows-style ``C:\\x.py:f`` keeps its drive."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where.strip() or not name.strip().isidentifier():
        raise ValueError(f"function {ref!r} must be FILE.py:NAME or package.module:NAME")
    return where.strip(), name.strip()


class RewardList(tuple):
    """A tuple of :class:`RewardSpec`, parsed and checked as one config value."""

    @classmethod
    def parse_config(cls, name: str, raw: Any) -> RewardList:
        """Any of the three forms in the module doc -> a checked RewardList; ConfigError naming
        ``name`` and the entry otherwise."""
        if isinstance(raw, RewardList):
            return raw
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return cls()
        if isinstance(raw, str):
            try:
                raw = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{name}: not a YAML/JSON list: {exc}") from None
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"{name}: expected a list of {{name, function, weight}}, got {raw!r:.80}")
        specs = [_entry(name, i, item) for i, item in enumerate(raw) if not _is_blank_row(item)]
        return cls.checked(name, specs)

    @classmethod
    def checked(cls, name: str, specs: Iterable[RewardSpec]) -> RewardList:
        specs = list(specs)
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise ConfigError(
                    f"{name}: reward {spec.name!r} is listed twice (its metric would be ambiguous)"
                )
            seen.add(spec.name)
        if specs and sum(spec.weight for spec in specs) <= 0:
            raise ConfigError(f"{name}: the weights add up to 0: every reward would be 0 and nothing learned")
        return cls(specs)

    def to_config(self) -> list[dict[str, Any]]:
        """The YAML form (what ``TrainConfig.to_dict`` writes)."""
        return [spec.to_dict() for spec in self]


def _is_blank_row(item: Any) -> bool:
    # The Train tab's table always shows an empty last row to type into.
    if isinstance(item, list | tuple):
        return all(v is None or (isinstance(v, str) and not v.strip()) for v in item)
    return False


def _entry(name: str, i: int, item: Any) -> RewardSpec:
    where = f"{name}[{i}]"
    if isinstance(item, list | tuple):
        if len(item) != 3:
            raise ConfigError(f"{where}: expected [name, function, weight], got {list(item)!r}")
        item = dict(zip(("name", "function", "weight"), item, strict=True))
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name, function, weight, got {item!r:.60}")
    unknown = set(item) - {"name", "function", "weight"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    reward = str(item.get("name") or "").strip()
    if not _NAME.match(reward):
        raise ConfigError(f"{where}: name {reward!r} must be a plain name (letters, digits, _ or -)")
    function = item.get("function")
    function = str(function).strip() if function is not None and str(function).strip() else None
    if function is None and reward not in BUILTIN_REWARDS:
        raise ConfigError(
            f"{where}: reward {reward!r} is not built in ({', '.join(BUILTIN_REWARDS)}): give its "
            "function as FILE.py:NAME or package.module:NAME"
        )
    if function is not None:
        try:
            split_reference(function)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    weight = item.get("weight", 1.0)
    try:
        if isinstance(weight, bool):
            raise ValueError
        weight = float(weight)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: weight must be a number, got {weight!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"{where}: weight must be a finite number >= 0, got {weight}")
    return RewardSpec(name=reward, weight=weight, function=function)
