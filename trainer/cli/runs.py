"""`vgrpo runs`: list, show, export and delete runs in the run database.

    vgrpo runs list [--json] [--status running] [--kind train|model|all]
    vgrpo runs show RUN [--json]                 RUN is an id or a unique name
    vgrpo runs export RUN --format csv|jsonl|parquet [--what metrics|rollouts] [-o FILE]
    vgrpo runs delete RUN [--yes] [--files]

Every command takes ``--db URL`` (default: $VGRPO_DB or the workspace's runs.db). ``list`` lists the
training runs; ``--kind model`` the models ``vgrpo eval`` registered to file their evaluations under.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from trainer.core.errors import ConfigError, RunDBError
from trainer.rundb import RUN_KINDS, TRAIN_RUN, RunStore, resumed_checkpoints, run_duration_s
from trainer.rundb.export import FORMATS, WHATS, export_rows, write_export
from trainer.rundb.models import RUN_STATUSES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", metavar="URL", help="SQLAlchemy URL of the run database (default: workspace runs.db)"
    )

    parser = subparsers.add_parser("runs", help="list, show, export and delete runs")
    sub = parser.add_subparsers(dest="runs_command", required=True, metavar="{list,show,export,delete}")

    p = sub.add_parser("list", parents=[common], help="all runs, newest first")
    p.add_argument("--json", action="store_true", help="print a JSON list of runs")
    p.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    p.add_argument(
        "--kind",
        choices=(*RUN_KINDS, "all"),
        default=TRAIN_RUN,
        help="training runs (default), models registered for evaluation, or all",
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="one run: status, config, latest metrics, events")
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", parents=[common], help="write a run's metrics or rollouts to a file")
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--what", choices=WHATS, default="metrics")
    p.add_argument("-o", "--output", type=Path, help="output file (default: stdout for csv/jsonl)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "delete", parents=[common], help="delete a run's rows (and with --files its output dir)"
    )
    p.add_argument("run", metavar="RUN", help="run id or unique name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--files", action="store_true", help="also delete the run's output directory")
    p.set_defaults(func=cmd_delete)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def cmd_list(args: argparse.Namespace) -> int:
    with RunStore(args.db) as store:
        store.reap_dead_runs()  # the one explicit place where dead owners are ended (reads never write)
        runs = store.list_runs(status=args.status, kind=None if args.kind == "all" else args.kind)
    if args.json:
        print(json.dumps([asdict(r) for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs in {store.url}")
        return 0
    print(f"{'id':>5}  {'name':<28} {'status':<9} {'created':<19}  {'ended':<19}  reason")
    for r in runs:
        error = (r.error or r.end_reason or "").splitlines()[0][:60] if (r.error or r.end_reason) else ""
        created, ended = _when(r.created_at), _when(r.ended_at)
        print(f"{r.id:>5}  {r.name[:28]:<28} {r.status:<9} {created:<19}  {ended:<19}  {error}")
    return 0


def _print_attempts(attempts: list, resumed: dict) -> None:
    if not attempts:
        return
    print("attempts:")
    for a in attempts:
        took = _duration(a.duration_s) if a.duration_s is not None else "running"
        why = f"  {a.end_reason.splitlines()[0]}" if a.end_reason else ""
        start = f"resumed from {resumed[a.number]}" if a.number in resumed else "from scratch"
        print(
            f"  #{a.number:<3} pid {a.pid}@{a.host}  {_when(a.started_at)} -> {_when(a.ended_at)}"
            f"  {took:>9}  {start}  {a.status}{why}"
        )


def _print_workers(workers: list) -> None:
    """A Ray run's processes (its newest attempt that recorded them): rank, node, host, pid."""
    if not workers:
        return
    print(f"workers (attempt {workers[0].attempt}):")
    for w in workers:
        print(f"  rank {w.rank:<3} node {w.node_id[:16]}  {w.host} ({w.ip or '-'})  pid {w.pid}")


def cmd_show(args: argparse.Namespace) -> int:
    with RunStore(args.db) as store:
        run = store.resolve_run(args.run)
        if store.reap_dead_runs([run.id]):
            run = store.get_run(run.id)
        config = store.get_config(run.id)
        latest = store.latest_metrics([run.id]).get(run.id, {})
        counts = store.count_rows(run.id)
        checkpoints = store.checkpoints(run.id, include_deleted=True)
        attempts = store.attempts(run.id)
        events = store.events(run.id)
        workers = store.workers(run.id)
    trained_s = run_duration_s(run, attempts)
    resumed = resumed_checkpoints(attempts, events)
    if args.json:
        attempts_doc = [asdict(a) | {"resumed_from": resumed.get(a.number)} for a in attempts]
        doc = {
            **asdict(run),
            "config": dict(config.config) if config else None,
            "dataset_fingerprints": dict(config.dataset_fingerprints) if config else None,
            "latest_metrics": {name: {"step": p.step, "value": p.value} for name, p in latest.items()},
            "counts": counts,
            "checkpoints": [asdict(c) for c in checkpoints],
            "trained_s": trained_s,
            "attempts": attempts_doc,
            "events": [asdict(e) for e in events],
            "workers": [w.to_dict() for w in workers],  # a Ray run's: rank, node, host, pid
        }
        print(json.dumps(doc, indent=2))
        return 0
    kind = "  (a model registered for evaluation)" if run.is_model else ""
    print(f"run {run.id}: {run.name}  [{run.status}]{kind}")
    for label, value in (
        ("created", _when(run.created_at)),
        ("started", _when(run.started_at)),
        ("ended", _when(run.ended_at)),
        ("pid@host", f"{run.pid}@{run.host}" if run.pid else "-"),
        ("ray job", f"{run.ray_job_id} on {run.ray_address}" if run.ray_job_id else "-"),
        ("trained for", "-" if trained_s is None else _duration(trained_s)),
        ("output dir", run.output_dir or "-"),
        ("rows", f"{counts['metrics']} metric points, {counts['rollouts']} rollouts"),
    ):
        print(f"  {label:<13} {value}")
    forked = None if run.resumed_from is None else f"run {run.resumed_from}"  # from another run
    for label, value in (("forked from", forked), ("reason", run.end_reason), ("error", run.error)):
        if value:
            print(f"  {label:<13} {value}")
    _print_attempts(attempts, resumed)
    _print_workers(workers)
    if latest:
        print("latest metrics:")
        for name, point in sorted(latest.items()):
            print(f"  {name:<32} {point.value:.6g}  (step {point.step})")
    if checkpoints:
        print("checkpoints:")
        for c in checkpoints:
            gone = f"  (deleted {_when(c.deleted_at)})" if c.deleted_at is not None else ""
            print(f"  step {c.step:<8} {c.path}{gone}")
    if events:
        print("events:")
        for e in events[-10:]:
            first_line = e.message.splitlines()[0] if e.message else ""
            print(f"  {_when(e.time)}  {e.level:<7} {e.kind:<10} {first_line}")
    if config:
        print("config:")
        print(json.dumps(dict(config.config), indent=2, sort_keys=True))
    if run.traceback:
        print("traceback:")
        print(run.traceback.rstrip())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "parquet" and args.output is None:
        raise ConfigError("--format parquet writes a binary file: give -o FILE")
    with RunStore(args.db) as store:
        run = store.resolve_run(args.run)
        columns, rows = export_rows(store, run.id, args.what)
    write_export(columns, rows, args.format, args.output if args.output is not None else sys.stdout)
    if args.output is not None:
        print(f"wrote {len(rows)} {args.what} rows of run {run.id} to {args.output}", file=sys.stderr)
    return 0


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:  # no terminal to ask: the safe answer
        return False


def cmd_delete(args: argparse.Namespace) -> int:
    with RunStore(args.db) as store:
        run = store.resolve_run(args.run)
        if run.is_active:  # said early, before the prompt; the guarantee is delete_run's condition
            raise RunDBError(f"run {run.id} ({run.name}) is {run.status}; abort it before deleting it")
        counts = store.count_rows(run.id)
        output_dir = Path(run.output_dir) if args.files and run.output_dir else None
        what = f"run {run.id} ({run.name}): {counts['metrics']} metric points, {counts['rollouts']} rollouts"
        if output_dir is not None:
            what += f", and the directory {output_dir}"
        if not args.yes and not _confirm(f"Delete {what}?"):
            print("nothing deleted")
            return 1
        if output_dir is not None and output_dir.resolve() in (
            Path.home().resolve(),
            Path(output_dir.resolve().anchor),
        ):
            raise ConfigError(f"run {run.id}: refusing to delete output dir {output_dir}")
        # Rows first: refused (nothing deleted) if a resume queued the run while the prompt waited.
        store.delete_run(run.id)
        if output_dir is not None and output_dir.exists():
            shutil.rmtree(output_dir)
    print(f"deleted {what}")
    return 0
