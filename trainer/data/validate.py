"""Validate a whole annotation file: every bad record reported, every good record loaded.

``validate_file`` is what ``vgrpo data validate``, ``vgrpo data register`` and dataset loading
share: it reads the file (any format in ``formats.py``), checks each record's media (exists,
decodes), decides the answer mode and sums it all up in a :class:`ValidationReport`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.core.errors import DataError, RecordError
from trainer.data.formats import IMAGE
from trainer.data.loading import Loaded, iter_loaded
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.records import MCQRecord
from trainer.data.video import VideoInfo, probe_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DurationStats:
    """Video durations over the distinct decodable videos of a file."""

    count: int
    min_s: float
    mean_s: float
    max_s: float

    @classmethod
    def of(cls, durations: list[float]) -> DurationStats | None:
        if not durations:
            return None
        return cls(len(durations), min(durations), sum(durations) / len(durations), max(durations))


@dataclass
class ValidationReport:
    """What ``validate_file`` found. ``records`` holds the valid records, ``errors`` one
    RecordError per bad record, both in file order."""

    path: str
    video_root: str
    schema_only: bool
    mode: str
    records: list[MCQRecord] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    option_counts: dict[int, int] = field(default_factory=dict)  # multiple-choice records only
    problem_types: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    durations: DurationStats | None = None

    @property
    def valid(self) -> int:
        return len(self.records)

    @property
    def invalid(self) -> int:
        return len(self.errors)

    @property
    def total(self) -> int:
        return self.valid + self.invalid

    @property
    def is_ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "video_root": self.video_root,
            "schema_only": self.schema_only,
            "mode": self.mode,
            "total": self.total,
            "valid": self.valid,
            "invalid": self.invalid,
            "option_counts": {str(k): v for k, v in sorted(self.option_counts.items())},
            "problem_types": dict(self.problem_types),
            "formats": dict(self.formats),
            "video_durations": None
            if self.durations is None
            else {
                "count": self.durations.count,
                "min_s": self.durations.min_s,
                "mean_s": self.durations.mean_s,
                "max_s": self.durations.max_s,
            },
            "errors": [
                {
                    "source": e.source,
                    e.unit: e.index,
                    "record_id": e.record_id,
                    "reason": e.reason,
                    "message": str(e),
                }
                for e in self.errors
            ],
        }

    def format_text(self, max_errors: int | None = None) -> str:
        """A human summary; lists every error unless ``max_errors`` caps it."""
        lines = [f"{self.path}: {self.total} records, {self.valid} valid, {self.invalid} invalid"]
        lines.append(
            f"  video root: {self.video_root}"
            + ("  (schema only: media not checked)" if self.schema_only else "")
        )
        lines.append(f"  mode: {self.mode}")
        if self.formats:
            lines.append("  formats: " + ", ".join(f"{k} {v}" for k, v in sorted(self.formats.items())))
        if set(self.problem_types) - {MULTIPLE_CHOICE}:
            lines.append("  problem types: " + ", ".join(f"{k} {v}" for k, v in self.problem_types.items()))
        if self.option_counts:
            dist = ", ".join(f"{k} options: {v}" for k, v in sorted(self.option_counts.items()))
            lines.append(f"  {dist}")
        if self.durations is not None:
            d = self.durations
            lines.append(
                f"  video duration: min {d.min_s:.2f} s, mean {d.mean_s:.2f} s, max {d.max_s:.2f} s "
                f"over {d.count} videos"
            )
        shown = self.errors if max_errors is None else self.errors[:max_errors]
        if shown:
            lines.append(f"errors ({self.invalid}):")
            lines.extend(f"  {e}" for e in shown)
            if len(shown) < len(self.errors):
                lines.append(f"  ... and {len(self.errors) - len(shown)} more (--json lists all)")
        return "\n".join(lines)


def infer_mode(name: str, think_flags: list[bool | None]) -> str:
    """``no_think`` when the dataset name says so; else what the reference answers show (any
    ``<think>`` -> think, answers without one -> no_think); else think (the project default)."""
    if "no_think" in name.lower():
        return NO_THINK
    evidence = [f for f in think_flags if f is not None]
    if evidence:
        return THINK if any(evidence) else NO_THINK
    return THINK


def validate_file(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    schema_only: bool = False,
    mode: str | None = None,
    check_videos: bool = True,
    rejected: Mapping[tuple[int, str], str] | None = None,
) -> ValidationReport:
    """Check every record of an annotation file.

    ``video_root``: where relative media paths start (default: the file's folder); nothing may
    point outside it. ``schema_only``: skip the media files entirely (benchmark annotations whose
    videos live elsewhere). ``check_videos``: decode each video's first frame (and open each image)
    rather than only checking that the file exists and is not empty. ``mode``: force think/no_think
    instead of inferring it (see :func:`infer_mode`). ``rejected``: ``(index, record id) -> reason``
    of records an earlier full check refused (a registered dataset's, see
    :func:`trainer.data.registry.validate_entry`): they are reported with that reason again, their
    media not read. Raises DataError only for file-level problems.
    """
    if mode is not None and mode not in (THINK, NO_THINK):
        raise DataError(f"mode must be {THINK!r} or {NO_THINK!r}, got {mode!r}")
    path = Path(path)
    root = Path(video_root) if video_root is not None else path.resolve().parent
    probes: dict[Path, VideoInfo | str | None] = {}  # media shared by many records is probed once
    good: list[Loaded] = []
    errors: list[RecordError] = []
    for item in iter_loaded(path, root):
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        reason = (rejected or {}).get((item.index, item.record_id))
        if reason is None and not schema_only:
            reason = _media_problem(item, check_videos, probes)
        if reason is not None:
            errors.append(RecordError(str(path), item.index, item.record_id, reason, unit=item.unit))
            continue
        good.append(item)
    file_mode = mode or infer_mode(path.stem, [g.draft.has_think for g in good])
    records = [_record(g, str(path), file_mode) for g in good]
    durations = [info.duration_s for info in probes.values() if isinstance(info, VideoInfo)]
    report = ValidationReport(
        path=str(path),
        video_root=str(root.resolve()),
        schema_only=schema_only,
        mode=file_mode,
        records=records,
        errors=errors,
        option_counts=dict(Counter(len(r.options) for r in records if r.is_multiple_choice)),
        problem_types=dict(Counter(r.problem_type for r in records)),
        formats=dict(Counter(g.draft.fmt for g in good)),
        durations=DurationStats.of(durations),
    )
    if errors:
        logger.debug("%s: %d of %d records invalid", path, len(errors), report.total)
    return report


def load_records(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    schema_only: bool = False,
    mode: str | None = None,
) -> list[MCQRecord]:
    """The valid records of one file, with a warning naming how many bad ones were skipped."""
    report = validate_file(path, video_root=video_root, schema_only=schema_only, mode=mode)
    if report.errors:
        logger.warning(
            "%s: skipped %d bad records of %d (first: %s); `vgrpo data validate` lists them all",
            path,
            report.invalid,
            report.total,
            report.errors[0],
        )
    return report.records


def _media_problem(
    item: Loaded, check_videos: bool, probes: dict[Path, VideoInfo | str | None]
) -> str | None:
    kind = item.draft.media_kind
    if not item.media.is_file():
        return f"{kind} not found: {item.media}"
    if item.media.stat().st_size == 0:  # FFmpeg would call it "Invalid data", hiding the cause
        return f"empty file (0 bytes): {item.media}"
    if not check_videos:
        return None
    if item.media not in probes:
        probes[item.media] = _probe_image(item.media) if kind == IMAGE else _probe_video(item.media)
    result = probes[item.media]
    return result if isinstance(result, str) else None


def _probe_video(path: Path) -> VideoInfo | str:
    try:
        return probe_video(path)
    except DataError as exc:
        return f"undecodable video: {exc}"


def _probe_image(path: Path) -> None | str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # PIL reports bad headers as SyntaxError
        return f"undecodable image {path}: {exc}"
    return None


def _record(item: Loaded, source: str, mode: str) -> MCQRecord:
    d = item.draft
    media = str(item.media)
    return MCQRecord(
        id=item.record_id,
        video=media if d.media_kind != IMAGE else None,
        image=media if d.media_kind == IMAGE else None,
        question=d.question,
        options=d.options,
        answer=d.answer,
        source=source,
        index=item.index,
        mode=mode,
        index_unit=item.unit,
        problem_type=d.problem_type,
    )
