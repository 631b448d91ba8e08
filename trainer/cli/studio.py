"""`vgrpo studio`: open the Gradio studio (on 127.0.0.1 unless told otherwise).

With no arguments it opens on ./workspace (or $VGRPO_WORKSPACE), the embedded tiny model and the
built-in synthetic datasets, so Train works at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError
from trainer.paths import default_workspace


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:password"`` -> ``("user", "password")``; ConfigError when either part is empty."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must be USER:PASSWORD with both parts non-empty")
    return user, password


def run(args: argparse.Namespace) -> int:
    # gradio is imported only here: `vgrpo train` and `vgrpo data` never pay for it.
    from studio.app import launch_app
    from studio.context import StudioContext

    auth = parse_auth(args.auth)
    ctx = StudioContext(Path(args.workspace) if args.workspace else default_workspace(), args.db or "")
    if args.host not in ("127.0.0.1", "localhost") and auth is None:
        print(
            f"warning: serving on {args.host} without --auth: anyone on the network can train and delete runs"
        )
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
    parser.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="require this login")
    parser.add_argument(
        "--db", default=None, help="run database URL (default: <workspace>/runs.db or $VGRPO_DB)"
    )
    parser.set_defaults(func=run)
