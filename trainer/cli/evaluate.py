"""`vgrpo eval`: answer a dataset greedily with one checkpoint and store the result in the run DB.

    vgrpo eval --checkpoint PATH --dataset_use NAME [--db URL] [--run RUN] [--max_records N]
               [--batch_size B] [--json FILE]

The video settings and the answer length come from the checkpoint's ``train_config.yaml`` when it
has one (so a checkpoint is judged on the frames it was trained on), else from the defaults; flags
override both. With ``--db`` the evaluation is stored against the checkpoint's row: found by path
among the runs' checkpoints, else registered under ``--run``, else under a run named
``eval-<folder name>`` (created once, then reused). The studio's Evaluate tab starts this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError, StudioError
from trainer.paths import is_hub_id
from trainer.rundb.lifecycle import RunAborted

logger = logging.getLogger(__name__)

TRAIN_CONFIG_FILE = "train_config.yaml"
DEFAULT_MAX_NEW_TOKENS = 256
_STEP = re.compile(r"checkpoint-(\d+)$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on a dataset (greedy answers)")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, base model folder or hub id")
    p.add_argument(
        "--dataset_use", required=True, help="dataset name(s), e.g. synthetic_motion_eval or a%%50"
    )
    p.add_argument("--db", metavar="URL", help="store the result in this run database (SQLAlchemy URL)")
    p.add_argument("--run", help="run id or name the checkpoint belongs to (when it is not in the DB yet)")
    p.add_argument("--max_records", type=int, default=None, help="evaluate only the first N records")
    p.add_argument("--batch_size", type=int, default=8, help="questions answered per generate call")
    p.add_argument("--max_new_tokens", type=int, default=None, help="answer length cap (default: as trained)")
    p.add_argument("--fps", type=float, default=None, help="video frames per second (default: as trained)")
    p.add_argument("--max_frames", type=int, default=None, help="frames per video (default: as trained)")
    p.add_argument("--max_pixels", type=int, default=None, help="pixels per frame (default: as trained)")
    p.add_argument("--seed", type=int, default=0, help="seed for dataset %% sampling")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--workspace", type=Path, default=None, help="workspace with datasets.json")
    p.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write summary + per-record results"
    )
    p.add_argument("--job", type=int, default=None, help=argparse.SUPPRESS)  # the studio's job row
    p.set_defaults(func=run)


def check_checkpoint(path: str) -> str:
    """A local model folder (resolved) or a hub id; ConfigError naming the path otherwise."""
    local = Path(path).expanduser()
    if local.exists():
        if not ((local / "config.json").is_file() or (local / "adapter_config.json").is_file()):
            raise ConfigError(
                f"checkpoint {local.resolve()} is not a model folder (no config.json or adapter_config.json)"
            )
        return str(local.resolve())
    if is_hub_id(path):
        return path
    raise ConfigError(f"checkpoint not found: {local.resolve()}")


def checkpoint_step(path: str) -> int:
    """``.../checkpoint-40`` -> 40; a base model (any other folder) is step 0."""
    match = _STEP.search(Path(path).name)
    return int(match.group(1)) if match else 0


def trained_settings(path: str) -> tuple[dict[str, Any], int | None]:
    """The video section and generation_max_length of a checkpoint's train_config.yaml, if any."""
    config_file = Path(path) / TRAIN_CONFIG_FILE
    if not config_file.is_file():
        return {}, None
    import yaml

    try:
        doc = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_file}: unreadable ({exc})") from exc
    video = doc.get("video") if isinstance(doc.get("video"), dict) else {}
    grpo = doc.get("grpo") if isinstance(doc.get("grpo"), dict) else {}
    return dict(video), grpo.get("generation_max_length")


def video_config_for(args: argparse.Namespace, trained_video: dict[str, Any]) -> Any:
    from dataclasses import fields

    from trainer.data.video import VideoConfig

    known = {f.name for f in fields(VideoConfig)}
    cfg = VideoConfig(**{k: v for k, v in trained_video.items() if k in known})
    overrides = {
        name: getattr(args, name)
        for name in ("fps", "max_frames", "max_pixels")
        if getattr(args, name) is not None
    }
    if "max_pixels" in overrides and overrides["max_pixels"] < cfg.min_pixels:
        overrides["min_pixels"] = overrides["max_pixels"]
    return replace(cfg, **overrides)


def find_checkpoint_row(store: Any, path: str, run_id: int | None) -> Any:
    """The checkpoint row whose path is ``path`` (in ``run_id``, or in any run when None)."""
    runs = [run_id] if run_id is not None else [r.id for r in store.list_runs()]
    for rid in runs:
        for ckpt in store.checkpoints(rid):
            if _same_path(ckpt.path, path):
                return ckpt
    return None


def _same_path(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def checkpoint_row_for(store: Any, path: str, run_ref: str | None) -> Any:
    """Find or register the checkpoint row the evaluation hangs on (see the module docstring)."""
    run_id = store.resolve_run(run_ref).id if run_ref else None
    found = find_checkpoint_row(store, path, run_id)
    if found is not None:
        return found
    if run_id is None:
        name = f"eval-{Path(path).name or path}"
        existing = [r for r in store.list_runs() if r.name == name]
        if existing:
            run_id = existing[0].id
        else:
            # A model trained elsewhere: registered as a run that is already over.
            run = store.create_run(name, config={"model": {"model_name_or_path": path}}, status="finished")
            run_id = run.id
        found = find_checkpoint_row(store, path, run_id)
        if found is not None:
            return found
    logger.info("registering %s as a checkpoint of run %d", path, run_id)
    return store.add_checkpoint(run_id, checkpoint_step(path), path, {})


@contextmanager
def recorded_job(store: Any, args: argparse.Namespace, ckpt: Any, num_records: int) -> Iterator[Any]:
    """This evaluation as a job in the run database: the studio's (``--job``), else a new one.
    Claimed for this process; ends finished with its result, failed, or aborted (cancel = SIGTERM)."""
    from trainer.rundb import Owner, job_lifecycle

    job_id = args.job
    if job_id is None:
        params = {"checkpoint": args.checkpoint, "dataset": args.dataset_use, "max_records": args.max_records}
        job_id = store.create_job("evaluate", params, run_id=ckpt.run_id, owner=Owner.current()).id
    with job_lifecycle(store, job_id) as handle:
        handle.progress(0, num_records)
        yield handle
        handle.progress(num_records, num_records)


def _evaluate_and_store(
    args: argparse.Namespace,
    path: str,
    records: list,
    video_cfg: Any,
    max_new_tokens: int,
    store: Any,
    ckpt: Any,
    processes: Any,
) -> tuple[Any, Any]:
    """Load the checkpoint, answer the records, store the evaluation (with a DB and a checkpoint row)."""
    from trainer.evaluate import evaluate
    from trainer.modeling import generation_kwargs, load_policy

    device = _device(args.device) if processes.num_processes == 1 else str(processes.device)
    dtype = "bf16" if device.startswith("cuda") else None
    try:
        model, processor = load_policy(path, dtype=dtype, device=device)
    except StudioError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load checkpoint {path}: {str(exc).strip().splitlines()[0]}") from exc
    logger.info("evaluating %s on %s (%d records, %s)", path, args.dataset_use, len(records), device)
    kwargs = generation_kwargs(processor, max_new_tokens, do_sample=False)
    result = evaluate(
        model, processor, records, video_cfg, kwargs, batch_size=args.batch_size, processes=processes
    )
    evaluation = None
    if store is not None and ckpt is not None:
        evaluation = store.add_evaluation(
            ckpt.id,
            args.dataset_use,
            accuracy=result.accuracy,
            format_rate=result.format_rate,
            results=result.records,
        )
        store.add_event(
            ckpt.run_id,
            "evaluation",
            f"step {ckpt.step} on {args.dataset_use}: accuracy {result.accuracy:.3f}, "
            f"format {result.format_rate:.3f} ({result.num_records} records)",
        )
    return result, evaluation


def _device(name: str | None) -> str:
    if name:
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _processes() -> Any:
    """accelerate's view of the processes this command runs in (CPU ones use gloo)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def run(args: argparse.Namespace) -> int:
    from trainer.data.registry import load_dataset_use
    from trainer.paths import default_workspace

    if args.max_records is not None and args.max_records < 1:
        raise ConfigError(f"--max_records must be >= 1, got {args.max_records}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {args.batch_size}")
    path = check_checkpoint(args.checkpoint)
    trained_video, trained_length = trained_settings(path) if Path(path).is_dir() else ({}, None)
    video_cfg = video_config_for(args, trained_video)
    max_new_tokens = args.max_new_tokens or trained_length or DEFAULT_MAX_NEW_TOKENS

    workspace = args.workspace if args.workspace is not None else default_workspace()
    records = load_dataset_use(args.dataset_use, workspace, args.seed)
    if args.max_records is not None:
        records = records[: args.max_records]

    # Open the DB before the slow part, so a bad URL or run fails in a second.
    # Under `accelerate launch` every process answers its share of the records (the main process
    # alone stores and reports); run plainly it is one process.
    processes = _processes()
    store = None
    if args.db and processes.is_main_process:
        from trainer.rundb import RunStore

        store = RunStore(args.db)
    try:
        ckpt = checkpoint_row_for(store, path, args.run) if store is not None else None
        job = recorded_job(store, args, ckpt, len(records)) if store is not None else nullcontext(None)
        with job as handle:  # ends the job finished with its result, failed or aborted
            result, evaluation = _evaluate_and_store(
                args, path, records, video_cfg, max_new_tokens, store, ckpt, processes
            )
            if handle is not None:
                handle.result.update(accuracy=result.accuracy, format_rate=result.format_rate)
                if evaluation is not None:
                    handle.result.update(
                        evaluation_id=evaluation.id, checkpoint_id=ckpt.id, run_id=ckpt.run_id
                    )
    except RunAborted as exc:
        print(f"vgrpo eval: cancelled ({exc})", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.close()

    if not processes.is_main_process:
        return 0
    print(
        f"eval {args.dataset_use}: accuracy {result.accuracy:.4f}, format rate {result.format_rate:.4f} "
        f"on {result.num_records} records ({result.seconds:.1f} s)"
    )
    if evaluation is not None:
        print(f"stored evaluation {evaluation.id} (checkpoint {ckpt.id}, run {ckpt.run_id})")
    if args.json is not None:
        doc = {
            "checkpoint": path,
            "dataset": args.dataset_use,
            **result.summary(),
            "seconds": result.seconds,
            "video": video_cfg.to_dict(),
            "max_new_tokens": max_new_tokens,
            "run_id": ckpt.run_id if ckpt is not None else None,
            "checkpoint_id": ckpt.id if ckpt is not None else None,
            "evaluation_id": evaluation.id if evaluation is not None else None,
            "confusion": result.confusion,
            "records": result.records,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
