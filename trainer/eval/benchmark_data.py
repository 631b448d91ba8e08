"""Reading benchmark files for ``vgrpo eval``: every record counted, each kept with its task.

The records themselves go through the dataset loaders (``validate_file``: every format of
``trainer.data.formats``); this module adds what scoring needs on top: each record's task and the
problem type of the records the loaders refuse. A refused record of a type we score is bad data
(``invalid``, logged like in training); one of a type we cannot score (an unknown type, or a
conversation record without options or type: an open-ended question counted as free-form) is
counted by type in ``skipped``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.core.errors import DataError
from trainer.data.loading import file_kind
from trainer.data.registry import resolve_dataset_use, validate_entry
from trainer.eval.benchmark import (
    BenchmarkItem,
    is_scorable,
    item_type,
    problem_type,
    stratified_subset,
    task_of,
)

logger = logging.getLogger(__name__)

FREE_FORM = "free-form"


@dataclass
class BenchmarkSet:
    """The items to score of a ``dataset_use`` spec, and what was left out and why."""

    items: list[BenchmarkItem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # problem type -> records not scored
    invalid: int = 0  # records of a scored type the loaders refused (bad schema, missing video)


def raw_records(path: Path) -> dict[int, dict[str, Any]]:
    """The file's raw records keyed the way the loaders number them (JSON index, JSONL/CSV line).

    A NExT-QA CSV row's question ``type`` (CW, TN, ...) becomes its ``task``.
    """
    kind = file_kind(path)
    out: dict[int, dict[str, Any]] = {}
    with path.open(encoding="utf-8-sig", newline="" if kind == "csv" else None) as f:
        if kind == "json":
            out = {i: r for i, r in enumerate(json.load(f)) if isinstance(r, dict)}
        elif kind == "jsonl":
            for line_no, line in enumerate(f, start=1):
                try:
                    raw = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    continue  # the loaders report it
                if isinstance(raw, dict):
                    out[line_no] = raw
        else:
            reader = csv.DictReader(f)
            for row in reader:
                out[reader.line_num] = {**row, "task": row.get("type") or ""}
    return out


def load_benchmark(
    spec: str,
    workspace: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    check_media: bool = True,
    seed: int = 0,
) -> BenchmarkSet:
    """The records of every dataset in ``spec`` (names or files); ``NAME%N`` keeps N % of each task.

    ``video_root`` replaces each dataset's own root (Video-R1 paths are ``./Evaluation/...`` under
    the folder the benchmark videos were unpacked to). ``check_media=False`` reads the annotations
    only (the videos are not needed to look at a file's tasks or to score given completions).
    """
    out = BenchmarkSet()
    skipped: Counter[str] = Counter()
    first_invalid = None
    for entry, percent in resolve_dataset_use(spec, workspace):
        root = Path(video_root) if video_root is not None else entry.video_root
        raws = raw_records(entry.annotation_path)
        # A registered dataset's records its registration refused stay out (validate_entry).
        report = validate_entry(entry, schema_only=not check_media, check_videos=False, video_root=root)
        kinds = [(e, _refused_type(raws.get(e.index, {}), e.reason)) for e in report.errors]
        invalid = [e for e, kind in kinds if _is_bad_data(kind, e.reason)]
        skipped.update(kind for e, kind in kinds if not _is_bad_data(kind, e.reason))
        if invalid:
            # Bad records are left out like in training, loudly.
            logger.warning(
                "dataset %s: %d records unusable (first: %s)",
                entry.name,
                len(invalid),
                invalid[0],
            )
        out.invalid += len(invalid)
        first_invalid = first_invalid or (invalid[0] if invalid else None)
        items = []
        for r in report.records:
            if is_scorable(item_type(r)):
                items.append(BenchmarkItem(record=r, task=task_of(raws.get(r.index, {}), entry.name)))
            else:  # a loader that accepts a type we have no metric for
                skipped[item_type(r)] += 1
        out.items.extend(stratified_subset(items, percent=percent if percent < 100 else None, seed=seed))
    if not out.items:
        raise DataError(
            f"dataset_use {spec!r}: no record to score ({out.invalid} unusable"
            + (f", first: {first_invalid}" if first_invalid else "")
            + f"; skipped by type: {dict(skipped)}; is --video-root right?)"
        )
    out.skipped = dict(skipped)
    return out


def _is_bad_data(kind: str, reason: str) -> bool:
    """A refused record of a type we score (not an open-ended conversation record)."""
    return is_scorable(kind) and not reason.startswith("no options")


def _refused_type(raw: dict[str, Any], reason: str) -> str:
    """The problem type of a record the loaders refused: its own, or free-form when a
    conversation record has no options at all (an open-ended question, not a broken MCQ)."""
    if reason.startswith("no options"):
        return FREE_FORM
    return problem_type(raw)
