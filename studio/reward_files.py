"""Reward files uploaded from the Train tab: who may upload one, and where it is stored.

A reward file is Python the trainer imports and runs, so the studio lets a browser upload one only
where the browser's user could run code anyway: a studio bound to this machine's loopback address,
or one behind a login (``vgrpo studio --auth``). Check and Launch then accept reward files only
inside the workspace (``trainer.run.preflight.check_launch(reward_roots=[workspace])``), which is
where an upload lands: ``<workspace>/rewards/<name>.py``.

Choices made here:

- The file is never executed here: its public top-level functions are read with ``ast`` to say the
  ``FILE.py:NAME`` to type. Check imports it (and calls it), as for any reward file.
- An existing file of the same name is never replaced: the same content is a no-op, other content is
  refused with a message to rename the file (a run's config may still name the old one).
- The path to type is relative (``rewards/x.py:fn``): the trainer looks a relative reward file up in
  the workspace, so the config stays valid when the workspace moves.
"""

from __future__ import annotations

import ast
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from trainer.core.errors import ConfigError

REWARDS_DIR = "rewards"  # under the workspace
MAX_REWARD_FILE_BYTES = 256 * 1024  # a reward module is a few KB; anything larger is not one
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1); False for 0.0.0.0, a
    LAN address, a host name or None (not known)."""
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def is_upload_allowed(host: str | None, has_login: bool) -> bool:
    """A reward file may be uploaded when the studio is bound to loopback or needs a login."""
    return has_login or is_loopback(host)


@dataclass(frozen=True)
class StoredRewardFile:
    """An uploaded reward file in the workspace."""

    path: Path  # absolute
    relative: str  # as typed in the table: rewards/x.py
    functions: tuple[str, ...]  # its public top-level functions, in file order
    is_new: bool  # False: the same file was already there


def public_functions(source: str, name: str) -> tuple[str, ...]:
    """The public top-level functions of a module's source; ConfigError naming ``name`` when the
    source is not valid Python."""
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as exc:
        raise ConfigError(f"{name} is not valid Python: line {exc.lineno}: {exc.msg}") from None
    return tuple(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_")
    )


def stored_name(original: str) -> str:
    """``My Rewards (2).py`` -> ``My_Rewards_2.py``: a plain file name (no folders, no spaces)."""
    stem = _UNSAFE.sub("_", Path(original).stem).strip("_-") or "reward"
    return f"{stem}.py"


def store_reward_file(
    upload: Path, workspace: Path, original_name: str | None = None, max_bytes: int = MAX_REWARD_FILE_BYTES
) -> StoredRewardFile:
    """Copy an uploaded ``.py`` file to ``<workspace>/rewards/``; ConfigError naming the file when it
    is not a ``.py`` file, is larger than ``max_bytes``, is not UTF-8 Python, or differs from a file
    of the same name already there."""
    name = original_name or upload.name
    if Path(name).suffix.lower() != ".py":
        raise ConfigError(f"{name}: a reward file must be a Python file ending in .py")
    size = upload.stat().st_size
    if size > max_bytes:
        raise ConfigError(f"{name}: {size:,} bytes is more than a reward file may hold ({max_bytes:,} bytes)")
    data = upload.read_bytes()
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    functions = public_functions(source, name)
    folder = Path(workspace) / REWARDS_DIR
    target = folder / stored_name(name)
    relative = f"{REWARDS_DIR}/{target.name}"
    if target.exists():
        if target.read_bytes() != data:
            raise ConfigError(
                f"{relative} already exists in the workspace with other content: rename your file "
                "(a run's config may still name the old one) or delete the old one first"
            )
        return StoredRewardFile(target.resolve(), relative, functions, is_new=False)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{target.name}.{os.getpid()}.part"
    partial.write_bytes(data)
    try:
        # A hard link never replaces an existing file (two uploads of one name at once: one wins, the
        # other is refused), and a Check never sees a half-written file.
        os.link(partial, target)
    except FileExistsError:
        raise ConfigError(f"{relative} was just stored by another upload: upload yours again") from None
    finally:
        partial.unlink(missing_ok=True)
    return StoredRewardFile(target.resolve(), relative, functions, is_new=True)
