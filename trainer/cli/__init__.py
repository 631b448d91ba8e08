"""`vgrpo`: the one command line of the project.

Each subcommand lives in its own module that exposes ``add_parser(subparsers)``; the parser it adds
sets ``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# OpenMP threads that spin while waiting make torch 10x slower as soon as another process (the
# studio, a second run, the tests) shares the cores; a passive wait costs little when alone.
# Set before any subcommand imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from trainer.core.errors import StudioError

# Subcommand name -> module under trainer.cli. Imported lazily so `vgrpo data list` never pays
# for importing torch or gradio.
SUBCOMMANDS = {
    "train": "trainer.cli.train",
    "data": "trainer.cli.data",
    "runs": "trainer.cli.runs",
    "eval": "trainer.cli.evaluate",
    "export": "trainer.cli.export",
    "studio": "trainer.cli.studio",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgrpo", description="Video GRPO Studio command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    # Only the chosen subcommand's module is imported (the others may pull in heavy libraries).
    wanted = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, module_name in SUBCOMMANDS.items():
        if wanted is None or name == wanted:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue  # not built yet
            module.add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=f"see `vgrpo {name} --help`")
    return parser


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.argv = None if as_program else argv  # `vgrpo train` relaunching itself needs to know which
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # qwen-vl-utils logs every decoded video at INFO, and alembic two lines ("Context impl
    # SQLiteImpl", "Will assume transactional DDL") each time a process opens the run DB; keep the
    # terminal and the run's log (the Monitor shows its tail) for our own progress.
    for noisy in ("qwen_vl_utils", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StudioError as exc:
        # A user mistake: one clear line, no traceback.
        print(f"vgrpo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        end_process_group()


def end_process_group() -> None:
    """Tear down the process group `accelerate launch` made, before the interpreter does.

    Left to interpreter shutdown, gloo's threads were once destroyed while still joinable and a
    process that had finished its work aborted ("terminate called without an active exception",
    exit -6), failing a 2-process `vgrpo eval` whose report was already written. No collective here,
    so a process that ends early (an error) does not wait for the others."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
