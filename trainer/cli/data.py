"""`vgrpo data`: list, validate, register and unregister datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.core.errors import DataError
from trainer.core.paths import default_workspace
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.registry import list_datasets, register_dataset, unregister_dataset
from trainer.data.validate import validate_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="list, validate and register datasets")
    commands = parser.add_subparsers(dest="data_command", metavar="{list,validate,register,unregister}")
    parser.set_defaults(func=lambda args: _help(parser))

    p = commands.add_parser("list", help="built-in and registered datasets")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    _workspace_arg(p)
    p.set_defaults(func=run_list)

    p = commands.add_parser("validate", help="check every record of an annotation file")
    p.add_argument("file", type=Path, help="annotation file (.json list, .jsonl or NExT-QA .csv)")
    p.add_argument("--video-root", type=Path, help="folder media paths are relative to (default: the file's)")
    p.add_argument("--schema-only", action="store_true", help="do not look at the video/image files")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_validate)

    p = commands.add_parser("register", help="validate an annotation file and store it under a name")
    p.add_argument("name", help="dataset name: letters, digits, '_', '.', '-'")
    p.add_argument("file", type=Path, help="annotation file")
    p.add_argument("--video-root", type=Path, help="folder media paths are relative to (default: the file's)")
    p.add_argument("--schema-only", action="store_true", help="do not look at the video/image files")
    p.add_argument("--mode", choices=[THINK, NO_THINK], help="answer format (default: from name/answers)")
    p.add_argument("--force", action="store_true", help="replace an entry of the same name")
    _workspace_arg(p)
    p.set_defaults(func=run_register)

    p = commands.add_parser("unregister", help="forget a registered dataset (files are kept)")
    p.add_argument("name")
    _workspace_arg(p)
    p.set_defaults(func=run_unregister)


def _workspace_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace folder (default: $VGRPO_WORKSPACE or ./workspace)",
    )


def _workspace(args: argparse.Namespace) -> Path:
    return args.workspace if args.workspace is not None else default_workspace()


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_list(args: argparse.Namespace) -> int:
    entries = list_datasets(_workspace(args))
    if args.json:
        print(json.dumps([e.to_dict() | {"exists": e.annotation_path.is_file()} for e in entries], indent=2))
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        flag = "built-in" if e.builtin else "user"
        missing = "" if e.annotation_path.is_file() else "  (missing)"
        print(f"{e.name:<{width}}  {e.mode or '-':<8}  {flag:<8}  {e.annotation_path}{missing}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    report = validate_file(args.file, video_root=args.video_root, schema_only=args.schema_only)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
    return 0 if report.is_ok else 1


def run_register(args: argparse.Namespace) -> int:
    name = args.name
    report = validate_file(args.file, video_root=args.video_root, schema_only=args.schema_only)
    print(report.format_text(max_errors=20))
    if not report.records:
        raise DataError(
            f"not registering {name}: none of the {report.total} records in {args.file} is usable"
        )
    mode = args.mode or (NO_THINK if "no_think" in name.lower() else report.mode)
    entry = register_dataset(
        name,
        args.file,
        _workspace(args),
        video_root=args.video_root,
        mode=mode,
        overwrite=args.force,
        report=report,
    )
    skipped = (
        f"; {report.invalid} bad records are left out of training and evaluation" if report.invalid else ""
    )
    print(f"registered {entry.name} ({report.valid} records, mode {entry.mode}){skipped}")
    return 0


def run_unregister(args: argparse.Namespace) -> int:
    entry = unregister_dataset(args.name, _workspace(args))
    print(f"unregistered {entry.name} ({entry.annotation_path} kept)")
    return 0
