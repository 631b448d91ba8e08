"""Reading annotation files (JSON list, JSONL, NExT-QA CSV) into drafts with resolved media paths.

File-level problems (missing, empty, not JSON at all, unreadable CSV header) raise
:class:`DataError`; anything wrong with one record becomes a :class:`RecordError` yielded in its
place, so one bad line never hides the rest of the file. JSONL and CSV are streamed line by line.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.errors import DataError, RecordError
from trainer.data.formats import (
    NEXTQA_COLUMNS,
    NEXTQA_OPTION_COLUMNS,
    Draft,
    nextqa_id,
    nextqa_row,
    parse_record,
    record_id,
)

logger = logging.getLogger(__name__)

LINE = "line"  # JSONL/CSV: 1-based line number
INDEX = "index"  # JSON list: 0-based position
_PEEK_CHARS = 4096


@dataclass(frozen=True)
class Loaded:
    """One record that parsed: its draft, where its media file is, and where it sits in the file."""

    draft: Draft
    media: Path  # absolute, resolved, inside the video root (may not exist)
    record_id: str
    index: int
    unit: str


def resolve_media(raw_path: str, video_root: Path) -> Path:
    """``raw_path`` made absolute under ``video_root``; ValueError when it points outside it.

    Video-R1 writes paths as ``./Evaluation/...``: the leading ``./`` is dropped. Symlinks are
    followed before the check, so a link inside the root that points elsewhere is refused too.
    """
    text = raw_path.strip()
    if not text:
        raise ValueError("empty media path")
    root = video_root.resolve()
    full = Path(text)
    full = (full if full.is_absolute() else root / full).resolve()
    if not full.is_relative_to(root):
        raise ValueError(f"path {raw_path!r} escapes the video root {root}")
    return full


def file_kind(path: Path) -> str:
    """``"csv"``, ``"jsonl"`` or ``"json"`` (a top-level list), from the suffix and first character."""
    if not path.exists():
        raise DataError(f"annotation file not found: {path}")
    if not path.is_file():
        raise DataError(f"annotation path is not a file: {path}")
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        with path.open(encoding="utf-8-sig") as f:
            head = f.read(_PEEK_CHARS).lstrip()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    if not head:
        raise DataError(f"{path}: empty file, no records")
    if head[0] == "[":
        return "json"
    if head[0] == "{":
        if head.splitlines()[0].strip() == "{":
            raise DataError(
                f"{path}: one JSON object over several lines; expected a list of records or JSONL"
            )
        return "jsonl"
    raise DataError(
        f"{path}: not JSON (a list of records) or JSONL (one object a line); starts with {head[:20]!r}"
    )


def iter_loaded(
    path: str | os.PathLike, video_root: str | os.PathLike | None = None
) -> Iterator[Loaded | RecordError]:
    """Every record of ``path`` in file order: a :class:`Loaded` or the RecordError saying why not.

    ``video_root`` defaults to the annotation file's folder.
    """
    path = Path(path)
    kind = file_kind(path)
    root = Path(video_root) if video_root is not None else path.resolve().parent
    if not root.is_dir():
        raise DataError(f"video root is not a folder: {root}")
    rows = _csv_rows(path) if kind == "csv" else _json_rows(path) if kind == "json" else _jsonl_rows(path)
    source = str(path)
    for index, unit, rid, payload in rows:
        if isinstance(payload, str):  # the row could not be read at all
            yield RecordError(source, index, rid, payload, unit=unit)
            continue
        try:
            draft = payload()
            media = resolve_media(draft.media_path, root)
        except ValueError as exc:
            yield RecordError(source, index, rid, str(exc), unit=unit)
            continue
        yield Loaded(draft=draft, media=media, record_id=rid, index=index, unit=unit)


# A row is (index, unit, record id, payload): payload is a thunk building the Draft (so its
# ValueError is caught in one place) or a string reason when the row itself is unreadable.
_Row = tuple[int, str, str, Any]


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    stem = path.stem
    try:
        with path.open(encoding="utf-8-sig") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield line_no, LINE, f"{stem}:{line_no}", f"bad JSON: {exc.msg} (column {exc.colno})"
                    continue
                yield line_no, LINE, record_id(raw, stem, line_no), _thunk(parse_record, raw)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc


def _json_rows(path: Path) -> Iterator[_Row]:
    try:
        with path.open(encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: top-level JSON is {type(data).__name__}; expected a list of records")
    if not data:
        raise DataError(f"{path}: empty list, no records")
    stem = path.stem
    for i, raw in enumerate(data):
        yield i, INDEX, record_id(raw, stem, i), _thunk(parse_record, raw)


def _csv_rows(path: Path) -> Iterator[_Row]:
    stem = path.stem
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in (*NEXTQA_COLUMNS, *NEXTQA_OPTION_COLUMNS[:2]) if c not in header]
            if missing:
                raise DataError(
                    f"{path}: CSV header lacks {', '.join(missing)}; only NExT-QA CSV "
                    "(video,question,answer,a0..a4) is supported"
                )
            count = 0
            for row in reader:
                count += 1
                line = reader.line_num
                rid = nextqa_id(row, stem, line)
                # DictReader files surplus fields under None and fills missing ones with None.
                if None in row:
                    yield line, LINE, rid, f"row has more fields than the header's {len(header)}"
                    continue
                if None in row.values():
                    yield line, LINE, rid, f"row has fewer fields than the header's {len(header)}"
                    continue
                yield line, LINE, rid, _thunk(nextqa_row, row)
            if count == 0:
                raise DataError(f"{path}: CSV has a header but no rows")
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable CSV: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc


def _thunk(fn: Any, arg: Any) -> Any:
    return lambda: fn(arg)
