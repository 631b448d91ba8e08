"""Answering records with one model for `vgrpo eval`: its video settings, the processes it runs
in, the job row it is recorded as, and loading and answering the checkpoint."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError, StudioError

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 256


def video_config_for(args: argparse.Namespace, trained_video: dict[str, Any]) -> Any:
    from dataclasses import fields

    from trainer.core.video_config import VideoConfig

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
    from trainer.eval.evaluate import evaluate
    from trainer.model.loading import generation_kwargs, load_policy

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
