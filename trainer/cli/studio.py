"""`vgrpo studio`: open the Gradio studio (on 127.0.0.1 unless told otherwise).

With no arguments it opens on ./workspace (or $VGRPO_WORKSPACE), the embedded tiny model and the
built-in synthetic datasets, so Train works at once.

Anyone who reaches the studio can start training, delete runs and read the workspace, so on any
address other than this machine it needs a login (``--auth USER:PASSWORD`` or $VGRPO_AUTH); serving
openly takes an explicit $VGRPO_ALLOW_UNAUTHENTICATED=1 and prints a loud warning.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError
from trainer.core.paths import default_workspace


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:password"`` -> ``("user", "password")``; ConfigError when either part is empty."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must be USER:PASSWORD with both parts non-empty")
    return user, password


AUTH_ENV = "VGRPO_AUTH"
ALLOW_OPEN_ENV = "VGRPO_ALLOW_UNAUTHENTICATED"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str, auth: tuple[str, str] | None, env: Mapping[str, str]) -> str | None:
    """None when serving is safe (this machine only, or a login); the warning to print when the
    user explicitly allowed an open server ($VGRPO_ALLOW_UNAUTHENTICATED=1); else ConfigError."""
    if host in LOCAL_HOSTS or auth is not None:
        return None
    if env.get(ALLOW_OPEN_ENV, "").strip().lower() not in ("1", "true", "yes"):
        raise ConfigError(
            f"refusing to serve on {host} without a login: anyone who can reach it could train, delete "
            f"runs and read the workspace. Pass --auth USER:PASSWORD (or set {AUTH_ENV}), use --host "
            f"127.0.0.1, or set {ALLOW_OPEN_ENV}=1 to serve it open anyway."
        )
    rule = "!" * 78
    return (
        f"{rule}\n!! WARNING: serving on {host} WITHOUT A LOGIN ({ALLOW_OPEN_ENV} is set).\n"
        "!! Anyone who can reach this address can start training, delete runs and read the workspace.\n"
        f"{rule}"
    )


def run(args: argparse.Namespace) -> int:
    auth = parse_auth(args.auth or os.environ.get(AUTH_ENV) or None)
    warning = exposure_warning(args.host, auth, os.environ)
    if warning is not None:
        print(warning, file=sys.stderr)
    # gradio is imported only here: `vgrpo train` and `vgrpo data` never pay for it.
    from studio.app import launch_app
    from studio.context import StudioContext

    ctx = StudioContext(Path(args.workspace) if args.workspace else default_workspace(), args.db or "")
    print(f"Video GRPO Studio on http://{args.host}:{args.port} (workspace {ctx.workspace}, db {ctx.db_url})")
    launch_app(ctx, host=args.host, port=args.port, auth=auth)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("studio", help="open the Gradio studio", description=__doc__)
    parser.add_argument(
        "--workspace", default=None, help="workspace folder (default: $VGRPO_WORKSPACE or ./workspace)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument(
        "--auth", default=None, metavar="USER:PASSWORD", help=f"require this login (default: ${AUTH_ENV})"
    )
    parser.add_argument(
        "--db", default=None, help="run database URL (default: <workspace>/runs.db or $VGRPO_DB)"
    )
    parser.set_defaults(func=run)
