"""Files the trainer writes get the mode any new file gets here (0o666 less the umask).

Libraries that write through a private temporary file and rename it leave 0600 behind: safetensors
(0.8) does so for ``model.safetensors``, so a checkpoint or an exported model folder came out
unreadable to the owner's group (a shared server, another user's studio). Checkpoints
(``trainer.run.checkpoint``) and ``vgrpo export`` both go through :func:`give_default_modes`.
"""

from __future__ import annotations

from pathlib import Path


def give_default_modes(folder: Path) -> None:
    """Give every file under ``folder`` the mode a new file gets here (0o666 less the umask)."""
    probe = folder / ".mode-probe"
    probe.touch()  # created with the umask applied: os.umask() would change it process-wide to read it
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
