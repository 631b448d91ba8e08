"""`vgrpo eval`: answer a dataset greedily with checkpoints and store the results in the run DB.

    vgrpo eval --checkpoint PATH --dataset_use NAME [--db URL] [--run RUN] [--max_records N]
               [--batch_size B] [--json FILE|-] [--limit N] [--video-root DIR] [--preset video_r1]
    vgrpo eval --run RUN --checkpoints all|latest|PATHS --base --dataset_use NAME --db URL

``trainer/cli/eval_models.py`` runs it: records, models, scoring per task, reuse of stored
evaluations; this module keeps the checkpoint helpers and loads and answers one model.

The video settings and the answer length come from the checkpoint's ``train_config.yaml`` when it
has one (so a checkpoint is judged on the frames it was trained on), else from the defaults; flags
override both. With ``--db`` the evaluation is stored against the checkpoint's row: found by path
among the runs' checkpoints, else registered under ``--run``, else under a run named
``eval-<folder name>`` (created once, then reused). The studio's Evaluate tab starts this command.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainer.cli.eval_models import add_benchmark_args
from trainer.cli.eval_models import run as run
from trainer.errors import ConfigError, StudioError
from trainer.paths import is_hub_id

logger = logging.getLogger(__name__)

TRAIN_CONFIG_FILE = "train_config.yaml"
DEFAULT_MAX_NEW_TOKENS = 256
_STEP = re.compile(r"checkpoint-(\d+)$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on a dataset (greedy answers)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder, base model folder or hub id")
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
        "--json", default=None, metavar="FILE", help="write per-task results and records ('-': stdout)"
    )
    p.add_argument("--job", type=int, default=None, help=argparse.SUPPRESS)  # the studio's job row
    add_benchmark_args(p)
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
        params = {
            "checkpoint": args.checkpoint
            or " + ".join(Path(p).name for p in getattr(args, "model_paths", [])),
            "models": list(getattr(args, "model_paths", [])),
            "dataset": args.dataset_use,
            "max_records": args.max_records,
        }
        job_id = store.create_job("evaluate", params, run_id=ckpt.run_id, owner=Owner.current()).id
    with job_lifecycle(store, job_id) as handle:
        handle.progress(0, num_records)
        yield handle
        handle.progress(num_records, num_records)


def answer_records(
    args: argparse.Namespace,
    path: str,
    records: list,
    video_cfg: Any,
    settings: dict[str, Any],
    processes: Any,
    on_progress: Any = None,
) -> Any:
    """Load the checkpoint and answer every record once with ``settings``' decoding (an EvalResult);
    under several processes each answers its share and every process gets all the answers."""
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
    sampled = settings["temperature"] > 0
    kwargs = generation_kwargs(
        processor,
        settings["max_new_tokens"],
        temperature=settings["temperature"] if sampled else 1.0,
        top_p=settings["top_p"],
        do_sample=sampled,
    )
    return evaluate(
        model,
        processor,
        records,
        video_cfg,
        kwargs,
        batch_size=args.batch_size,
        processes=processes,
        on_progress=on_progress,
    )


def _device(name: str | None) -> str:
    if name:
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def processes_state() -> Any:
    """accelerate's view of the processes this command runs in (CPU ones use gloo)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
