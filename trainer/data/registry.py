"""Named datasets and the ``dataset_use`` spec that picks them (as qwen-vl-finetune's
``--dataset_use a,b%50``: all of ``a`` plus a seeded 50 % sample of ``b``).

Built-in entries point at the embedded synthetic dataset; user entries live in
``<workspace>/datasets.json``, rewritten atomically (temp file + rename) under a lock, so a crash
or a second process never loses what was stored.

Registered means usable: registering with the validation report stores the records that
validation refused (and the annotation file's SHA-256), and every later read of the dataset
(:func:`validate_entry`: training, Check, evaluation, previews) leaves those out with the reason
found then, even where it only checks that videos exist. The user's file is never rewritten. When
the file changed since (or the entry was stored without a report), each video is decoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.errors import DataError
from trainer.core.paths import SYNTHETIC_DIR
from trainer.data.prompts import NO_THINK, THINK, mode_for_dataset
from trainer.data.records import MCQRecord
from trainer.data.validate import ValidationReport, validate_file

logger = logging.getLogger(__name__)

REGISTRY_FILE = "datasets.json"
REGISTRY_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ANNOTATION_SUFFIXES = (".json", ".jsonl", ".csv")

# Built-in name -> annotation file under assets/synthetic_motion (paths in it are relative to it).
BUILTIN_FILES = {
    "synthetic_motion_train": "train.jsonl",
    "synthetic_motion_eval": "eval.jsonl",
    "synthetic_motion_no_think_train": "train_no_think.jsonl",
    "synthetic_motion_no_think_eval": "eval_no_think.jsonl",
    "synthetic_motion_image_train": "train_image.jsonl",
    "synthetic_motion_image_eval": "eval_image.jsonl",
    # "How many times does the square bounce?": a number, no options (problem_type numerical).
    "synthetic_motion_numerical_train": "train_numerical.jsonl",
    "synthetic_motion_numerical_eval": "eval_numerical.jsonl",
    "synthetic_motion_numerical_no_think_train": "train_numerical_no_think.jsonl",
    "synthetic_motion_numerical_no_think_eval": "eval_numerical_no_think.jsonl",
}


@dataclass(frozen=True)
class RejectedRecord:
    """A record validation refused when its dataset was registered: never trained or evaluated."""

    unit: str  # "line" (JSONL/CSV, 1-based) or "index" (JSON list, 0-based)
    index: int
    record_id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "index": self.index, "record_id": self.record_id, "reason": self.reason}


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset the trainer can be pointed at by name."""

    name: str
    annotation_path: Path
    video_root: Path
    # think/no_think; None for an ad-hoc file path, whose mode is inferred when it is loaded.
    mode: str | None = None
    builtin: bool = False
    # Stored in the workspace registry (not built in, not an ad-hoc path in a dataset_use spec).
    registered: bool = False
    # SHA-256 of the annotation file when it was validated for registration (None: never validated).
    sha256: str | None = None
    rejected: tuple[RejectedRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``datasets.json`` and ``vgrpo data list --json`` show it (the checksum and
        the rejected records only for an entry registered with a validation report)."""
        data: dict[str, Any] = {
            "name": self.name,
            "annotation": str(self.annotation_path),
            "video_root": str(self.video_root),
            "mode": self.mode,
            "builtin": self.builtin,
        }
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        if self.rejected:
            data["rejected"] = [r.to_dict() for r in self.rejected]
        return data


def check_name(name: str) -> str:
    """Dataset names are ``[A-Za-z0-9_.-]+`` (``,`` and ``%`` would break a dataset_use spec)."""
    if not _NAME.match(name or ""):
        raise DataError(f"bad dataset name {name!r}: use letters, digits, '_', '.', '-' (no ',' or '%')")
    return name


def builtin_entries() -> dict[str, DatasetEntry]:
    return {
        name: DatasetEntry(
            name=name,
            annotation_path=SYNTHETIC_DIR / filename,
            video_root=SYNTHETIC_DIR,
            mode=mode_for_dataset(name),
            builtin=True,
        )
        for name, filename in BUILTIN_FILES.items()
    }


def registry_path(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / REGISTRY_FILE


def user_entries(workspace: str | os.PathLike) -> dict[str, DatasetEntry]:
    """The entries stored in ``<workspace>/datasets.json`` (none when the file does not exist)."""
    path = registry_path(workspace)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = {
            name: DatasetEntry(
                name=check_name(name),
                annotation_path=Path(item["annotation"]),
                video_root=Path(item["video_root"]),
                mode=item.get("mode"),
                registered=True,
                sha256=item.get("sha256"),
                rejected=tuple(RejectedRecord(**r) for r in item.get("rejected") or ()),
            )
            for name, item in data["datasets"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"dataset registry {path} is unreadable ({exc!r}); fix or remove it") from exc
    return entries


def list_datasets(workspace: str | os.PathLike) -> list[DatasetEntry]:
    """Built-in entries first, then the workspace's in name order."""
    return [*builtin_entries().values(), *sorted(user_entries(workspace).values(), key=lambda e: e.name)]


def get_dataset(name: str, workspace: str | os.PathLike) -> DatasetEntry:
    known = {**builtin_entries(), **user_entries(workspace)}
    if name not in known:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known)}")
    return known[name]


def register_dataset(
    name: str,
    annotation: str | os.PathLike,
    workspace: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    mode: str | None = None,
    overwrite: bool = False,
    report: ValidationReport | None = None,
) -> DatasetEntry:
    """Store a named entry in the workspace registry and return it.

    ``report``: ``validate_file``'s report on this file (the Datasets tab and ``vgrpo data register``
    pass theirs): the records it refused are stored, and no later read uses them. Without one (or
    with a schema-only one) only the name and the paths are checked here, and every read decodes
    each video to find the bad ones.
    ``mode`` defaults to no_think for names containing ``no_think``, else think.
    """
    check_name(name)
    if name in BUILTIN_FILES:
        raise DataError(f"dataset name {name!r} is built in; choose another")
    annotation_path = Path(annotation).resolve()
    if not annotation_path.is_file():
        raise DataError(f"annotation file not found: {annotation_path}")
    root = Path(video_root).resolve() if video_root is not None else annotation_path.parent
    if not root.is_dir():
        raise DataError(f"video root is not a folder: {root}")
    if mode is None:
        mode = mode_for_dataset(name)
    if mode not in (THINK, NO_THINK):
        raise DataError(f"mode must be {THINK!r} or {NO_THINK!r}, got {mode!r}")
    sha256, rejected = None, ()
    if report is not None:
        if not report.records:
            raise DataError(
                f"not registering {name}: none of the {report.total} records in {annotation_path} is usable"
            )
        # A schema-only report never looked at the videos: later reads must decode them.
        sha256 = None if report.schema_only else file_sha256(annotation_path)
        rejected = tuple(RejectedRecord(e.unit, e.index, e.record_id or "", e.reason) for e in report.errors)
    entry = DatasetEntry(
        name=name, annotation_path=annotation_path, video_root=root, mode=mode, registered=True,
        sha256=sha256, rejected=rejected,
    )  # fmt: skip
    with _locked(workspace):
        entries = user_entries(workspace)
        if name in entries and not overwrite:
            raise DataError(f"dataset {name!r} is already registered ({entries[name].annotation_path})")
        entries[name] = entry
        _write(workspace, entries)
    logger.info("registered dataset %s -> %s (%d records left out)", name, annotation_path, len(rejected))
    return entry


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # hashlib.file_digest is Python 3.11+; we support 3.10
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_entry(
    entry: DatasetEntry,
    schema_only: bool = False,
    check_videos: bool = True,
    video_root: str | os.PathLike | None = None,
) -> ValidationReport:
    """``validate_file`` on a dataset entry, leaving out what its registration refused.

    A registered entry whose file is unchanged since its report reports those records again with
    their reasons, without reading their media. One whose file changed, or that was stored
    without a report, gets each video decoded (``check_videos`` is forced on): checking only that
    files exist would let a corrupt video through. ``schema_only`` (media not wanted: scoring
    given completions) and a ``video_root`` other than the entry's (an evaluation's own root)
    make the stored verdicts moot; the arguments then apply as given.
    """
    root = Path(video_root) if video_root is not None else entry.video_root
    rejected = None
    if entry.registered and not schema_only and Path(root).resolve() == entry.video_root.resolve():
        if entry.sha256 is not None and entry.sha256 == file_sha256(entry.annotation_path):
            rejected = {(r.index, r.record_id): r.reason for r in entry.rejected}
        elif not check_videos:
            logger.warning(
                "dataset %s: %s %s; decoding every video to leave the bad ones out",
                entry.name,
                entry.annotation_path,
                "changed since it was registered"
                if entry.sha256
                else "was registered without its videos checked",
            )
            check_videos = True
    return validate_file(
        entry.annotation_path,
        video_root=root,
        schema_only=schema_only,
        mode=entry.mode,
        check_videos=check_videos,
        rejected=rejected,
    )


def unregister_dataset(name: str, workspace: str | os.PathLike) -> DatasetEntry:
    """Remove a user entry (the annotation file itself is left alone) and return it."""
    if name in BUILTIN_FILES:
        raise DataError(f"dataset {name!r} is built in and cannot be unregistered")
    with _locked(workspace):
        entries = user_entries(workspace)
        if name not in entries:
            raise DataError(f"dataset {name!r} is not registered in {registry_path(workspace)}")
        entry = entries.pop(name)
        _write(workspace, entries)
    logger.info("unregistered dataset %s", name)
    return entry


def resolve_dataset_use(spec: str, workspace: str | os.PathLike) -> list[tuple[DatasetEntry, float]]:
    """``"a,b%50"`` -> ``[(entry a, 100.0), (entry b, 50.0)]``.

    An item may be a registered/built-in name or a path to an annotation file (video root: its
    folder). Unknown names raise DataError listing the known ones.
    """
    known = {**builtin_entries(), **user_entries(workspace)}
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise DataError(f"empty dataset_use {spec!r}; known datasets: {', '.join(known)}")
    resolved = []
    for item in items:
        name, percent = _split_percent(item)
        if name in known:
            resolved.append((known[name], percent))
            continue
        path = Path(name)
        if path.suffix.lower() in _ANNOTATION_SUFFIXES or os.sep in name:
            if not path.is_file():
                raise DataError(f"dataset_use item {item!r}: annotation file not found: {path.resolve()}")
            path = path.resolve()
            resolved.append((DatasetEntry(path.stem, path, path.parent), percent))
            continue
        raise DataError(f"unknown dataset {name!r} in dataset_use {spec!r}; known: {', '.join(known)}")
    return resolved


def load_dataset_use(
    spec: str,
    workspace: str | os.PathLike,
    seed: int,
    schema_only: bool = False,
    check_videos: bool = True,
) -> list[MCQRecord]:
    """The valid records of every dataset in ``spec``, each sampled to its percent with ``seed``.

    Bad records are skipped with a warning that counts them; a dataset with no valid record at
    all raises DataError. ``check_videos=False`` only checks that media files exist instead of
    decoding each one (2,000 small clips take ~5 s to decode-check on 2 CPU cores).
    """
    records: list[MCQRecord] = []
    for entry, percent in resolve_dataset_use(spec, workspace):
        if not entry.annotation_path.is_file():
            hint = " (run scripts/make_synthetic_dataset.py)" if entry.builtin else ""
            raise DataError(f"dataset {entry.name}: annotation file not found: {entry.annotation_path}{hint}")
        report = validate_entry(entry, schema_only=schema_only, check_videos=check_videos)
        if not report.records:
            raise DataError(
                f"dataset {entry.name}: none of {report.total} records is usable "
                f"(first: {report.errors[0] if report.errors else 'no records'})"
            )
        if report.errors:
            logger.warning(
                "dataset %s: skipped %d bad records of %d (first: %s); `vgrpo data validate %s` lists them",
                entry.name,
                report.invalid,
                report.total,
                report.errors[0],
                entry.annotation_path,
            )
        records.extend(sample_percent(report.records, percent, seed, entry.name))
    return records


def sample_percent(records: list[MCQRecord], percent: float, seed: int, name: str) -> list[MCQRecord]:
    """A seeded ``percent`` % of ``records`` (at least one), kept in file order."""
    if percent >= 100:
        return list(records)
    count = max(1, int(len(records) * percent / 100))
    # A string seed is hashed with SHA-512 by `random`, so the sample is the same on every run.
    rng = random.Random(f"{seed}:{name}")
    keep = sorted(rng.sample(range(len(records)), count))
    return [records[i] for i in keep]


def _split_percent(item: str) -> tuple[str, float]:
    if "%" not in item:
        return item, 100.0
    name, _, text = item.rpartition("%")
    try:
        percent = float(text)
    except ValueError:
        raise DataError(f"dataset_use item {item!r}: {text!r} is not a percentage") from None
    if not 0 < percent <= 100 or not name:
        raise DataError(f"dataset_use item {item!r}: expected NAME%P with 0 < P <= 100")
    return name, percent


def _write(workspace: str | os.PathLike, entries: dict[str, DatasetEntry]) -> None:
    """Write the registry atomically: a crash leaves either the old or the new file, never half."""
    path = registry_path(workspace)
    data = {
        "version": REGISTRY_VERSION,
        "datasets": {
            name: {k: v for k, v in e.to_dict().items() if k not in ("name", "builtin")}
            for name, e in sorted(entries.items())
        },
    }
    fd, tmp = tempfile.mkstemp(prefix=".datasets.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(workspace: str | os.PathLike) -> Iterator[None]:
    """Serialise read-modify-write of the registry between processes (POSIX advisory lock)."""
    ws = Path(workspace)
    ws.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic rename still protects the file
        yield
        return
    with open(ws / f".{REGISTRY_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
