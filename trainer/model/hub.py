"""Why a model could not be loaded, in one line a user can act on.

transformers and huggingface_hub raise ``OSError`` for every way a hub model can be missing: no
network, ``HF_HUB_OFFLINE`` with a cache that lacks it, a repository that does not exist, a gated
one, a cache holding its ``config.json`` but not its weights. Their messages span several lines and
mostly read "couldn't connect" whatever the cause, and an ``OSError`` left to the studio's Check
handler showed a bare "Error" over the previous status. :func:`unavailable_model` turns one into a
ConfigError naming ``model_name_or_path``, the model and the reason, on one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from trainer.core.errors import ConfigError

# What to do about a model that is not here, for the reasons where downloading it is the fix.
_FETCH_HINT = "download it first (hf download {name}) or pick a local model folder"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (transformers wraps huggingface_hub's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def unavailable_reason(name: str, exc: BaseException, *, offline: bool, is_folder: bool) -> str:
    """Why ``name`` did not load, from what transformers raised (``exc``); ``offline``: the hub is
    switched off (``HF_HUB_OFFLINE``); ``is_folder``: ``name`` is a local folder, not a hub id."""
    if is_folder:
        return f"could not be loaded from its folder ({_first_line(exc)})"
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain = list(_chain(exc))
    hint = _FETCH_HINT.format(name=name)
    if any(isinstance(e, GatedRepoError) for e in chain):
        return (
            "could not be downloaded: it is a gated repository; accept its terms on huggingface.co "
            "and log in (hf auth login)"
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return (
            "is neither a local folder nor a model on the Hugging Face hub: check the name "
            "(a private repository needs hf auth login)"
        )
    if offline:
        return f"could not be downloaded: HF_HUB_OFFLINE is set and the local cache lacks it; {hint}"
    if any(isinstance(e, LocalEntryNotFoundError | OfflineModeIsEnabled) for e in chain) or any(
        "couldn't connect" in str(e) for e in chain
    ):
        return (
            "could not be downloaded: the Hugging Face hub cannot be reached (no network?) and the "
            f"local cache lacks it; {hint}"
        )
    if "does not appear to have a file named" in str(exc):
        # Its config.json is cached but not its weights, and the download failed (no network, the
        # hub says nothing more) or the repository has no weights under that name.
        return f"could not be downloaded: the local cache holds only part of it ({_first_line(exc)}); {hint}"
    return f"could not be downloaded or loaded ({_first_line(exc)})"


def unavailable_model(name: str, exc: BaseException) -> ConfigError:
    """The ConfigError for model ``name`` that failed to load with ``exc`` (raise it ``from exc``)."""
    from huggingface_hub import constants

    reason = unavailable_reason(
        name, exc, offline=bool(constants.HF_HUB_OFFLINE), is_folder=os.path.isdir(name)
    )
    return ConfigError(f"model_name_or_path: {name} {reason}")
