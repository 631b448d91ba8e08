"""A model that cannot be loaded: one line naming model_name_or_path, the model and why, for each way
transformers says it (no network, HF_HUB_OFFLINE, no such repository, gated, weights not cached),
and load_policy raising it instead of transformers' OSError (the studio showed a bare "Error")."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from tests.helpers.hub import HINT, HUB_ID, offline_hub
from trainer.core.errors import ConfigError
from trainer.model.hub import unavailable_reason
from trainer.model.loading import load_policy

NOT_FOUND = httpx.Response(404, request=httpx.Request("GET", f"https://huggingface.co/{HUB_ID}"))


def wrapped(message: str, cause: BaseException) -> OSError:
    """An OSError raised from ``cause``, as transformers' ``cached_files`` raises them."""
    try:
        raise OSError(message) from cause
    except OSError as exc:
        return exc


def test_each_way_a_hub_model_is_missing_has_its_reason() -> None:
    no_cache = wrapped(
        "We couldn't connect to 'https://huggingface.co'\nCheck your internet", LocalEntryNotFoundError("x")
    )
    assert unavailable_reason(HUB_ID, no_cache, offline=True, is_folder=False) == (
        f"could not be downloaded: HF_HUB_OFFLINE is set and the local cache lacks it; {HINT}"
    )
    assert unavailable_reason(HUB_ID, no_cache, offline=False, is_folder=False) == (
        "could not be downloaded: the Hugging Face hub cannot be reached (no network?) and the local "
        f"cache lacks it; {HINT}"
    )
    missing = wrapped("not a valid model identifier", RepositoryNotFoundError("404", response=NOT_FOUND))
    assert unavailable_reason("Qwen/Qwen9", missing, offline=False, is_folder=False) == (
        "is neither a local folder nor a model on the Hugging Face hub: check the name "
        "(a private repository needs hf auth login)"
    )
    gated = wrapped("You are trying to access a gated repo.", GatedRepoError("401", response=NOT_FOUND))
    assert unavailable_reason(HUB_ID, gated, offline=False, is_folder=False).startswith(
        "could not be downloaded: it is a gated repository"
    )
    # config.json cached, the weights not, and no network: transformers names only the file.
    partial = OSError(
        f"{HUB_ID} does not appear to have a file named pytorch_model.bin or model.safetensors."
    )
    assert unavailable_reason(HUB_ID, partial, offline=False, is_folder=False) == (
        f"could not be downloaded: the local cache holds only part of it ({partial}); {HINT}"
    )
    broken = OSError("Unable to load weights\nline 2")
    assert unavailable_reason("/models/m", broken, offline=False, is_folder=True) == (
        "could not be loaded from its folder (Unable to load weights)"
    )


@pytest.mark.parametrize("cached", ["nothing", "config only"])
def test_load_policy_of_a_hub_model_not_here_is_a_config_error(monkeypatch, tmp_path, cached) -> None:
    # With the config cached, transformers raised a bare OSError, past every except.
    offline_hub(monkeypatch, tmp_path / "hub", cached)
    with pytest.raises(ConfigError) as caught:
        load_policy(HUB_ID)
    assert str(caught.value) == (
        f"model_name_or_path: {HUB_ID} could not be downloaded: HF_HUB_OFFLINE is set and the local "
        f"cache lacks it; {HINT}"
    )
    assert isinstance(caught.value.__cause__, OSError)  # transformers' own words stay in the chain
