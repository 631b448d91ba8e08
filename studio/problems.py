"""Errors a person can read: one line saying what went wrong and what to do, the details folded away.

Every place the studio shows an error goes through :func:`error_markdown` (an exception) or
:func:`problem_from_text` (an error stored as text, e.g. a failed run's). The headline never holds
a ``.staging/<token>`` folder (an upload's temporary home, meaningless to the person) or an errno
number; the traceback, the SQL statement and the full paths go to the folded details.

    [Errno 2] No such file or directory: '/ws/datasets/.staging/3f2a.../videos/x.mp4'
    -> Video videos/x.mp4 not found: upload it together with the annotation file (or inside the zip).
"""

from __future__ import annotations

import errno
import html
import re
import traceback
from dataclasses import dataclass
from pathlib import PurePath

from studio import text
from trainer.core.errors import RunDBError, StudioError

MAX_HEADLINE = 300
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl", ".csv"})

# Everything up to and including an upload's staging token: what is left is the path the user sent.
_STAGING = re.compile(r"""[^\s'"(]*?\.staging/[0-9a-fA-F]{6,}/?""")
_ERRNO = re.compile(r"\[(?:Errno|WinError) -?\d+\]\s*")
_NOT_FOUND = re.compile(r"No such file or directory: '([^']*)'")


@dataclass(frozen=True)
class Problem:
    """``headline``: one line, what went wrong and what to do. ``details``: for whoever digs."""

    headline: str
    details: str = ""


def clean(text: str) -> str:
    """Drop staging folders and errno numbers; ``No such file or directory: 'x'`` -> ``x not found``."""
    text = _ERRNO.sub("", _STAGING.sub("", text))
    return _NOT_FOUND.sub(lambda m: f"{m.group(1)} not found", text)


def one_line(text: str) -> str:
    """The first non-empty line, whitespace collapsed, cut to MAX_HEADLINE characters."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= MAX_HEADLINE else line[: MAX_HEADLINE - 1] + "…"


def _kind(path: str) -> str:
    suffix = PurePath(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "Video"
    if suffix in IMAGE_SUFFIXES:
        return "Image"
    if suffix in ANNOTATION_SUFFIXES:
        return "Annotation file"
    return "File" if suffix else "Folder"


def _os_headline(exc: OSError) -> str:
    raw = str(exc.filename) if exc.filename is not None else ""
    staged = bool(_STAGING.search(raw))
    name = clean(raw)
    if exc.errno == errno.ENOSPC:
        return "The disk is full: free some space in the workspace and try again."
    if isinstance(exc, FileNotFoundError) and name:
        hint = (
            "upload it together with the annotation file (or inside the zip)"
            if staged
            else "check the path; it may have been moved or deleted"
        )
        return f"{_kind(name)} {name} not found: {hint}."
    if isinstance(exc, PermissionError):
        target = f" {name}" if name else ""
        return f"No permission to use{target}: check the owner and permissions of the folder."
    reason = exc.strerror or clean(str(exc)) or type(exc).__name__
    return f"{reason}{f': {name}' if name else ''}. Check the path and try again."


def _db_headline(exc: Exception) -> str:
    from sqlalchemy import exc as sa

    orig = clean(one_line(str(getattr(exc, "orig", None) or exc)))
    if isinstance(exc, sa.OperationalError):
        if "locked" in orig or "busy" in orig:
            return "The run database is busy (another process is writing): try again in a moment."
        if "unable to open" in orig:
            return (
                "The run database cannot be opened: check that the workspace folder exists and is writable."
            )
        return f"The run database could not be read or written ({orig}): check the --db URL and the disk."
    if isinstance(exc, sa.IntegrityError):
        return f"The run database refused a row that clashes with a stored one ({orig}): refresh and retry."
    return f"The run database failed ({type(exc).__name__}: {orig}): see the details and the studio log."


def _headline(exc: BaseException) -> str:
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, RunDBError) and isinstance(exc.__cause__, SQLAlchemyError):
        return _db_headline(exc.__cause__)  # the store's message is the whole SQL dump
    if isinstance(exc, StudioError):
        # Our own messages already name the record and the fix; only the plumbing is removed.
        return clean(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError):
        return _os_headline(exc)
    if isinstance(exc, SQLAlchemyError):
        return _db_headline(exc)
    message = clean(one_line(str(exc)))
    return f"Unexpected error ({type(exc).__name__}{f': {message}' if message else ''}): see the details."


def _details(exc: BaseException) -> str:
    """The SQL of a database error, and the traceback, except for a plain user mistake (a
    StudioError raised on purpose with nothing under it), whose message says it all."""
    # ``raise ... from None`` sets __suppress_context__: the error it replaced is no explanation.
    has_cause = exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__)
    if isinstance(exc, StudioError) and not has_cause:
        raw = str(exc).strip()
        return raw if raw != one_line(clean(raw)) else ""
    parts = []
    db_error = exc.__cause__ if isinstance(exc, RunDBError) else exc
    statement = getattr(db_error, "statement", None)
    if statement:
        parts.append(f"SQL: {statement}\nparameters: {getattr(db_error, 'params', None)!r}")
    parts.append("".join(traceback.format_exception(exc)).rstrip())
    return "\n\n".join(parts)


def describe(exc: BaseException) -> Problem:
    """The one-line headline for ``exc`` and its details (traceback, SQL, the untouched message)."""
    return Problem(one_line(_headline(exc)), _details(exc))


def problem_from_text(message: str, details: str = "") -> Problem:
    """An error stored as text (a failed run's error and traceback): the same cleaning."""
    full = message.strip()
    extra = full if "\n" in full or clean(full) != full else ""
    return Problem(
        one_line(clean(full)) or "Unknown error", "\n\n".join(p for p in (extra, details.strip()) if p)
    )


def problem_markdown(problem: Problem, action: str | None = None) -> str:
    """``**Action:** headline`` and, when there are details, a folded ``<details>`` block."""
    head = text.literal(problem.headline)
    out = f"**{action}:** {head}" if action else head
    if problem.details:
        out += (
            "\n\n<details><summary>Details</summary>\n\n"
            f"<pre>{html.escape(problem.details, quote=False)}</pre>\n\n</details>"
        )
    return out


def error_markdown(exc: BaseException, action: str | None = None) -> str:
    """What the studio shows for ``exc``: ``**action:** headline`` plus folded details."""
    return problem_markdown(describe(exc), action)
