"""Reward functions as plug-ins: the config's ``grpo.rewards`` list, the built-ins, and a user's own.

Every reward, built-in or not, has one signature (TRL's reward functions take the same shape, with
dataset columns where we pass the records)::

    fn(completions: list[str], records: list[MCQRecord], **context) -> list[float | None]

``completions[i]`` is scored against ``records[i]`` (a question's record repeats once per sampled
completion). ``context`` holds ``group_size`` (G), ``step`` (the optimizer step, 0 at Check) and
``mode`` (a list, the records' think/no_think mode per completion); a function takes what it needs
and ignores the rest through ``**context``. ``None`` says "does not apply to this completion" (a
length penalty only for free-form questions, say): it adds nothing to the total and is left out of
the ``reward/<name>`` mean (TRL treats None the same way).

The total reward of a completion is ``sum_k weight_k * value_k`` over the list, so without a
``grpo.rewards`` list the seed's two knobs give exactly ``0.3 * format + 0.7 * accuracy``.

Choices made here:

- ``function`` is ``FILE.py:NAME`` (absolute, or relative to the working directory, then the
  workspace) or ``package.module:NAME``. A file is imported under a name derived from its path, so
  two reward files both called ``rewards.py`` do not shadow each other.
- ``allowed_roots`` (the studio passes its workspace): a reward file outside every root, or a module
  that is neither installed (under one of the interpreter's library paths) nor inside a root, is
  refused. A reward function is code the trainer runs; the studio must not run a file a browser user
  pointed at elsewhere on the machine. ``vgrpo train`` from a terminal passes no roots: the user
  running it can already run any code.
- A function that raises, returns a list of the wrong length, or a value that is not a finite
  number or None ends the step with :class:`RewardFunctionError` naming the function; its traceback
  is chained, so the run's stored traceback shows the user's own frame. A silent 0 would train on a
  reward nobody computed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.paths import default_workspace
from trainer.core.reward_spec import ACCURACY, FORMAT, RewardSpec, seed_specs, split_reference
from trainer.score.rewards import format_reward, record_accuracy

RewardFn = Callable[..., list[float | None]]


class RewardFunctionError(Exception):
    """A reward function could not be loaded, raised, or returned something that is not a reward list.
    The message names the reward and its function."""


def format_rewards(completions: list[str], records: list[Any], **context: Any) -> list[float | None]:
    """The built-in format reward (:func:`trainer.score.rewards.format_reward` in each record's mode)."""
    return [format_reward(text, record.mode) for text, record in zip(completions, records, strict=True)]


def accuracy_rewards(completions: list[str], records: list[Any], **context: Any) -> list[float | None]:
    """The built-in accuracy reward of every problem type (:func:`trainer.score.rewards.record_accuracy`)."""
    return [record_accuracy(text, record) for text, record in zip(completions, records, strict=True)]


BUILTINS: dict[str, RewardFn] = {FORMAT: format_rewards, ACCURACY: accuracy_rewards}


@dataclass(frozen=True)
class LoadedReward:
    """A spec with its function imported; calling it checks what the function returned."""

    spec: RewardSpec
    fn: RewardFn

    def __call__(self, completions: list[str], records: list[Any], **context: Any) -> list[float | None]:
        try:
            values = self.fn(completions, records, **context)
        except Exception as exc:
            raise RewardFunctionError(f"reward {self.spec.label} raised {type(exc).__name__}: {exc}") from exc
        return checked_values(self.spec, values, len(completions))


def seed_rewards(format_weight: float = 0.3, accuracy_weight: float = 0.7) -> list[LoadedReward]:
    """The two built-ins with the seed's knobs as weights (what a config without ``grpo.rewards`` runs)."""
    return load_rewards(seed_specs(format_weight, accuracy_weight))


def checked_values(spec: RewardSpec, values: Any, expected: int) -> list[float | None]:
    """``values`` as floats (None kept), or RewardFunctionError: not a list, wrong length, a value
    that is not a number (bools are refused: ``True`` is a mistake more often than a 1.0), NaN or
    infinite."""
    if not isinstance(values, list | tuple):
        raise RewardFunctionError(
            f"reward {spec.label} returned {type(values).__name__}, expected a list of {expected} floats"
        )
    if len(values) != expected:
        raise RewardFunctionError(
            f"reward {spec.label} returned {len(values)} values for {expected} completions"
        )
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RewardFunctionError(
                f"reward {spec.label} returned {value!r} ({type(value).__name__}) for completion {i}: "
                "expected a float or None"
            )
        if not math.isfinite(value):
            raise RewardFunctionError(f"reward {spec.label} returned {value} for completion {i}")
        out.append(float(value))
    return out


def load_rewards(
    specs: Sequence[RewardSpec], allowed_roots: Sequence[Path] | None = None, search: Sequence[Path] = ()
) -> list[LoadedReward]:
    """Import every spec's function (built-ins by name). ``search`` are folders a relative file is
    looked up in after the working directory (the workspace); ``allowed_roots`` see the module doc."""
    loaded = []
    for spec in specs:
        if spec.function is None:
            if spec.name not in BUILTINS:
                raise RewardFunctionError(
                    f"reward {spec.name!r} is not built in ({', '.join(BUILTINS)}) and has no function"
                )
            loaded.append(LoadedReward(spec, BUILTINS[spec.name]))
        else:
            loaded.append(LoadedReward(spec, resolve_function(spec, allowed_roots, search)))
    return loaded


def workspace_search(cfg: Any) -> list[Path]:
    """Where a relative reward file is looked up after the working directory: the run's workspace
    (``data.workspace``, else the default one)."""
    return [Path(cfg.data.workspace).expanduser() if cfg.data.workspace else default_workspace()]


def resolve_function(
    spec: RewardSpec, allowed_roots: Sequence[Path] | None = None, search: Sequence[Path] = ()
) -> RewardFn:
    """The callable ``spec.function`` names (see the module doc for the lookup and the roots)."""
    assert spec.function is not None
    try:
        where, name = split_reference(spec.function)
    except ValueError as exc:
        raise RewardFunctionError(f"reward {spec.name}: {exc}") from None
    if where.endswith(".py"):
        module = _import_file(spec, _find_file(spec, where, search), allowed_roots)
    else:
        module = _import_module(spec, where, allowed_roots)
    fn = getattr(module, name, None)
    if fn is None:
        raise RewardFunctionError(f"reward {spec.label}: {where} has no {name!r}")
    if not callable(fn):
        raise RewardFunctionError(f"reward {spec.label}: {name!r} is a {type(fn).__name__}, not a function")
    return fn


def _find_file(spec: RewardSpec, where: str, search: Sequence[Path]) -> Path:
    path = Path(where).expanduser()
    candidates = (
        [path] if path.is_absolute() else [Path.cwd() / path, *(Path(root) / path for root in search)]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise RewardFunctionError(f"reward {spec.label}: no such file (looked at {looked})")


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(Path(root).resolve()) for root in roots)


def _library_roots() -> list[Path]:
    """Where installed modules live: this interpreter's standard library and site-packages."""
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return [Path(p).resolve() for p in {sysconfig.get_paths()[k] for k in keys}]


def _import_file(spec: RewardSpec, path: Path, allowed_roots: Sequence[Path] | None) -> Any:
    if allowed_roots is not None and not _inside(path, allowed_roots):
        raise RewardFunctionError(
            f"reward {spec.label}: {path} is outside the workspace; the studio only runs reward files "
            f"inside {', '.join(str(r) for r in allowed_roots)}"
        )
    module_name = f"vgrpo_reward_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    file_spec = importlib.util.spec_from_file_location(module_name, path)
    if file_spec is None or file_spec.loader is None:
        raise RewardFunctionError(f"reward {spec.label}: cannot import {path}")
    module = importlib.util.module_from_spec(file_spec)
    try:
        file_spec.loader.exec_module(module)
    except Exception as exc:
        raise RewardFunctionError(
            f"reward {spec.label}: importing {path} raised {type(exc).__name__}: {exc}"
        ) from exc
    sys.modules[module_name] = module
    return module


def _import_module(spec: RewardSpec, where: str, allowed_roots: Sequence[Path] | None) -> Any:
    try:
        found = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise RewardFunctionError(f"reward {spec.label}: cannot import {where}: {exc}") from exc
    if found is None:
        raise RewardFunctionError(f"reward {spec.label}: no module named {where!r}")
    if allowed_roots is not None and found.origin not in (None, "built-in", "frozen"):
        origin = Path(found.origin).resolve()
        if not _inside(origin, [*allowed_roots, *_library_roots()]):
            raise RewardFunctionError(
                f"reward {spec.label}: module {where} ({origin}) is neither installed nor inside the "
                "workspace; the studio only runs installed modules or workspace files"
            )
    try:
        return importlib.import_module(where)
    except Exception as exc:
        raise RewardFunctionError(
            f"reward {spec.label}: importing {where} raised {type(exc).__name__}: {exc}"
        ) from exc
