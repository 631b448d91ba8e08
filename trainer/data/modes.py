"""The think/no_think mode of a ``dataset_use`` spec, and the rule that a model is judged in its own.

A model trained on no_think answers (``<answer>`` only) asked a think question scores accuracy and
format 0.000 on every record, which reads as "the model learnt nothing". The Train tab refuses an
eval set of the other mode (``trainer.run.preflight.check_launch``); ``vgrpo eval`` and the
Evaluate tab refuse it for a trained checkpoint, with the same rule and the same words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from trainer.core.errors import ConfigError
from trainer.data.registry import resolve_dataset_use
from trainer.data.validate import validate_file


def spec_modes(spec: str, workspace: str | os.PathLike) -> tuple[str, ...]:
    """The sorted modes of the records ``spec`` loads, without loading their media: a registered or
    built-in name's own mode, an annotation file's as its records show (what loading it decides).
    Raises DataError for an unknown name or a missing file."""
    modes = set()
    for entry, _ in resolve_dataset_use(spec, workspace):
        if entry.mode is not None:
            modes.add(entry.mode)
        else:
            modes.add(validate_file(entry.annotation_path, entry.video_root, schema_only=True).mode)
    return tuple(sorted(modes))


def check_same_mode(
    field: str,
    spec: str,
    modes: Sequence[str],
    trained_as: str,
    trained_spec: str,
    trained_modes: Sequence[str],
) -> None:
    """ConfigError naming both sets and their modes when ``spec`` (the value of ``field``) has other
    modes than ``trained_spec``, the set ``trained_as`` names (``dataset_use``, ``checkpoint-40's
    dataset_use``)."""
    if tuple(sorted(modes)) == tuple(sorted(trained_modes)):
        return
    raise ConfigError(
        f"{field} {spec!r} is {'+'.join(sorted(modes))} but {trained_as} {trained_spec!r} is "
        f"{'+'.join(sorted(trained_modes))}: evaluate on a set with the same answer format (a name with "
        "no_think expects <answer> only)"
    )
