"""`vgrpo eval`: answer a dataset greedily with checkpoints and store the results in the run DB.

    vgrpo eval --checkpoint PATH --dataset_use NAME [--db URL] [--run RUN] [--max_records N]
               [--batch_size B] [--json FILE|-] [--limit N] [--video-root DIR] [--preset video_r1]
    vgrpo eval --run RUN --checkpoints all|latest|PATHS --base --dataset_use NAME --db URL

``trainer/cli/eval_models.py`` runs it: records, models, scoring per task, reuse of stored
evaluations; ``trainer.eval.checkpoints`` finds the checkpoint rows and ``trainer.eval.answering``
loads and answers one model. This module only declares the command's flags.

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
from pathlib import Path

from trainer.cli.eval_models import add_benchmark_args
from trainer.cli.eval_models import run as run

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
