"""`vgrpo studio` never serves beyond this machine without a login unless the user says so."""

from __future__ import annotations

import pytest

from trainer.cli import main as vgrpo
from trainer.cli.studio import ALLOW_OPEN_ENV, exposure_warning
from trainer.core.errors import ConfigError


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_this_machine_needs_no_login(host: str) -> None:
    assert exposure_warning(host, None, {}) is None


def test_a_login_makes_any_address_fine() -> None:
    assert exposure_warning("0.0.0.0", ("me", "pw"), {}) is None


def test_an_open_address_without_login_is_refused_naming_the_ways_out() -> None:
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0") as info:
        exposure_warning("0.0.0.0", None, {ALLOW_OPEN_ENV: "0"})
    assert "--auth" in str(info.value) and ALLOW_OPEN_ENV in str(info.value)


def test_allowing_it_explicitly_gives_a_loud_warning() -> None:
    warning = exposure_warning("0.0.0.0", None, {ALLOW_OPEN_ENV: "1"})
    assert warning is not None and "WITHOUT A LOGIN" in warning and "0.0.0.0" in warning


def test_the_cli_refuses_before_importing_gradio(monkeypatch, capsys) -> None:
    monkeypatch.delenv(ALLOW_OPEN_ENV, raising=False)
    monkeypatch.delenv("VGRPO_AUTH", raising=False)
    import sys

    monkeypatch.setitem(sys.modules, "studio.app", None)  # importing it now would fail the test
    assert vgrpo(["studio", "--host", "0.0.0.0", "--port", "1"]) == 1
    assert "refusing to serve on 0.0.0.0" in capsys.readouterr().err
