"""`vgrpo studio` parses its flags without importing gradio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer.cli import build_parser
from trainer.cli.studio import parse_auth
from trainer.core.errors import ConfigError


def test_defaults_bind_localhost() -> None:
    args = build_parser(["studio"]).parse_args(["studio"])
    assert (args.host, args.port, args.auth, args.workspace, args.db) == ("127.0.0.1", 7860, None, None, None)


def test_flags() -> None:
    argv = [
        "studio",
        "--workspace",
        "/w",
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--auth",
        "me:pw",
        "--db",
        "sqlite://",
    ]
    args = build_parser(argv).parse_args(argv)
    assert (args.workspace, args.host, args.port, args.auth, args.db) == (
        "/w",
        "0.0.0.0",
        9000,
        "me:pw",
        "sqlite://",
    )


def test_parse_auth() -> None:
    assert parse_auth("me:p:w") == ("me", "p:w")
    assert parse_auth(None) is None
    for bad in ("me", ":pw", "me:"):
        with pytest.raises(ConfigError, match="--auth must be USER:PASSWORD"):
            parse_auth(bad)


def test_parser_does_not_import_gradio() -> None:
    code = (
        "import sys; from trainer.cli import build_parser; build_parser(['studio']); "
        "print('gradio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
