"""Field types of the config dataclasses: strict parsing of YAML, flag and form values, and the
type check every dataclass runs in ``__post_init__``.

Nothing is coerced silently: ``2.5`` for an integer field, ``"abc"`` for a number, ``true`` for a
number or an empty value for a required field is a :class:`ConfigError` naming the field. The only
conversions are lossless ones (``"8"`` -> 8, ``8.0`` -> 8, ``"1e-3"`` -> 0.001, 3 -> 3.0).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from trainer.core.errors import ConfigError

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def field_help(text: str, **extra: Any) -> dict[str, Any]:
    """A config field's metadata: its help text (the flag's help and the form's info line read it)
    and any extra keys."""
    return {"help": text, **extra}


def field_type(f: dataclasses.Field, cls: type) -> type:
    """The plain Python type of a field (``int | None`` -> int)."""
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint


def is_optional(f: dataclasses.Field, cls: type) -> bool:
    """True when None is a valid value of the field (``int | None``)."""
    hint = typing.get_type_hints(cls)[f.name]
    return type(None) in typing.get_args(hint)


def _is_blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def parse_value(name: str, raw: Any, typ: type, optional: bool = False) -> Any:
    """A YAML, command-line or form value -> the field's type; raises ConfigError naming the field.

    An empty value (None or a blank string) is None for an optional field and "" for a text field;
    for any other field it is an error, never the default or 0.
    """
    if hasattr(typ, "parse_config"):  # a structured value (the grpo.rewards list) parses itself
        return typ.parse_config(name, raw)
    if _is_blank(raw):
        if optional:
            return None
        if typ is str:
            return ""
        raise ConfigError(f"{name}: a value is required ({_TYPE_WORDS[typ]}), got nothing")
    if typ is bool:
        return _parse_bool(name, raw)
    if typ is int:
        return _parse_int(name, raw)
    if typ is float:
        return _parse_float(name, raw)
    if isinstance(raw, bool | dict | list | tuple | set):
        raise ConfigError(f"{name}: expected text, got {raw!r}")
    return str(raw)


def _parse_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name}: not a boolean: {raw!r} (use true or false)")


def _parse_float(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ConfigError(f"{name}: expected a number, got {raw!r}")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {raw!r}")
    return value


def _parse_int(name: str, raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass  # "1e3" or "8.0" are integers written as floats; "2.5" and "abc" are not
    try:
        value = _parse_float(name, raw)
    except ConfigError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if not value.is_integer():
        raise ConfigError(f"{name}: expected an integer, got {raw!r} (integers are never rounded)")
    return int(value)


def check_field_types(obj: Any) -> None:
    """Raise ConfigError naming the first field of the dataclass ``obj`` whose value has the wrong
    type (a bool is not a number here; an int is a valid float; None only where the field allows it)."""
    cls = type(obj)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        typ = field_type(f, cls)
        if value is None:
            if is_optional(f, cls):
                continue
            ok = False
        elif typ is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        elif typ is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, typ)
        if not ok:
            raise ConfigError(f"{f.name} must be {_TYPE_WORDS.get(typ, typ.__name__)}, got {value!r}")


def raise_all(problems: list[str]) -> None:
    """One ConfigError saying every problem (none: nothing raised). Raised from None: each message
    already names its field, and a traceback under a typo only hides it."""
    if len(problems) == 1:
        raise ConfigError(problems[0]) from None
    if problems:
        raise ConfigError(f"{len(problems)} values are wrong: " + "; ".join(problems)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML as a mapping (not yet validated)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data
