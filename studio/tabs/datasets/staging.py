"""Staging an upload (no Gradio here): copy it into ``<workspace>/datasets/.staging/<token>/``, checked.

Everything a user sends is checked before it is kept: total size, zip entries that would land
outside the folder (zip slip), symlinks, and files that are neither the annotation nor media.
Each problem is a DataError naming the file.
"""

from __future__ import annotations

import logging
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from studio import text
from trainer.core.errors import DataError, StudioError
from trainer.data.loading import iter_loaded

logger = logging.getLogger(__name__)

ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl", ".csv"})
MEDIA_SUFFIXES = frozenset(
    {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
)
STAGING = ".staging"
# A staged upload nobody registered within a day was abandoned (a closed tab, a studio restart).
STALE_STAGING_S = 24 * 3600.0
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may hold (a zip is measured by its uncompressed size, so a zip bomb is refused)."""

    max_total_bytes: int = 2 * 1024**3
    max_files: int = 20_000


DEFAULT_LIMITS = UploadLimits()


def stage_upload(paths: list[Path], dest: Path, limits: UploadLimits = DEFAULT_LIMITS) -> Path:
    """Copy an upload into ``dest`` and return the annotation file's path there.

    ``paths`` is either one ``.zip`` (annotation + media, any folder layout) or one annotation
    file plus media files. Loose media are placed where the annotation's records expect them
    (``videos/x.mp4`` or ``x.mp4``). Raises DataError naming the offending file.
    """
    if not paths:
        raise DataError(text.NOTHING_UPLOADED)
    for p in paths:
        if p.is_symlink():
            raise DataError(f"{p.name}: symbolic links are not accepted")
    zips = [p for p in paths if p.suffix.lower() == ".zip"]
    if zips and len(paths) > 1:
        raise DataError(f"upload the zip ({zips[0].name}) alone: it must hold the annotation and the videos")
    dest.mkdir(parents=True, exist_ok=True)
    if zips:
        extract_zip(zips[0], dest, limits)
    else:
        _check_total([p.stat().st_size for p in paths], limits, "the upload")
        _stage_loose(paths, dest)
    return _find_annotation(dest)


def extract_zip(zip_path: Path, dest: Path, limits: UploadLimits = DEFAULT_LIMITS) -> list[Path]:
    """Extract a zip into ``dest`` after checking every entry; nothing is written if one is bad."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = []
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith("._"):
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise DataError(
                        f"{zip_path.name}: entry {name!r} is a symbolic link; links are not accepted"
                    )
                pure = PurePosixPath(name.replace("\\", "/"))
                target = (root / pure).resolve()
                if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(root):
                    raise DataError(
                        f"{zip_path.name}: entry {name!r} would be written outside the dataset folder"
                    )
                members.append((info, target))
            if len(members) > limits.max_files:
                raise DataError(
                    f"{zip_path.name}: {len(members)} files, more than the limit of {limits.max_files}"
                )
            _check_total([info.file_size for info, _ in members], limits, zip_path.name)
            for info, target in members:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{zip_path.name}: not a valid zip file ({exc})") from exc
    return [target for _, target in members]


def _check_total(sizes: list[int], limits: UploadLimits, what: str) -> None:
    total = sum(sizes)
    if total > limits.max_total_bytes:
        raise DataError(
            f"{what} is {human_size(total)}, over the upload limit of {human_size(limits.max_total_bytes)}"
        )


def human_size(n: float) -> str:
    """``5000`` -> ``"4.9 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _stage_loose(paths: list[Path], dest: Path) -> None:
    annotations = [p for p in paths if p.suffix.lower() in ANNOTATION_SUFFIXES]
    if len(annotations) != 1:
        names = ", ".join(p.name for p in annotations) or "none"
        raise DataError(f"upload exactly one annotation file (.json, .jsonl or .csv); got {names}")
    media = [p for p in paths if p not in annotations]
    for p in media:
        if p.suffix.lower() not in MEDIA_SUFFIXES:
            raise DataError(
                f"{p.name}: not a video or image file (allowed: {', '.join(sorted(MEDIA_SUFFIXES))})"
            )
    annotation = dest / annotations[0].name
    shutil.copyfile(annotations[0], annotation)
    # Where the records expect each file name (first record wins); unreferenced files go to the top.
    wanted: dict[str, Path] = {}
    try:
        for item in iter_loaded(annotation, dest):
            if not isinstance(item, StudioError):
                wanted.setdefault(item.media.name, item.media)
    except DataError:
        pass  # the annotation itself is broken: validation reports it
    for p in media:
        target = wanted.get(p.name, dest / p.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)


def _find_annotation(dest: Path) -> Path:
    files = [p for p in sorted(dest.rglob("*")) if p.is_file() or p.is_symlink()]
    for p in files:
        if p.is_symlink():
            raise DataError(f"{p.relative_to(dest)}: symbolic links are not accepted")
    annotations = [p for p in files if p.suffix.lower() in ANNOTATION_SUFFIXES]
    if len(annotations) != 1:
        names = ", ".join(str(p.relative_to(dest)) for p in annotations) or "none"
        raise DataError(
            f"expected exactly one annotation file (.json, .jsonl or .csv) in the upload; found {names}"
        )
    for p in files:
        if p not in annotations and p.suffix.lower() not in MEDIA_SUFFIXES:
            raise DataError(f"{p.relative_to(dest)}: not a video or image file; remove it from the upload")
    return annotations[0]


def clean_stale_staging(
    datasets_dir: Path, max_age_s: float = STALE_STAGING_S, now: float | None = None
) -> list[Path]:
    """Delete upload staging folders untouched for more than ``max_age_s``; return those removed.

    A validated upload waits in ``.staging/<token>/`` until Register moves it; one whose page was
    closed stays there. The studio calls this when it starts.
    """
    now = time.time() if now is None else now
    staging = Path(datasets_dir) / STAGING
    removed = []
    for folder in sorted(staging.iterdir()) if staging.is_dir() else []:
        try:
            if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError as exc:  # another studio removing it too, or no permission: keep going
            logger.warning("could not remove stale upload %s: %s", folder, exc)
    return removed
