"""`vgrpo eval` over a benchmark: one or several models on the same records, stored and reused.

    vgrpo eval --checkpoint PATH --dataset_use NAME|FILE [--json FILE|-] [--limit N] [--video-root DIR]
    vgrpo eval --run RUN --checkpoints all|latest|PATH[,PATH] --base --dataset_use ... --db URL

The records come from ``trainer.eval.benchmark_data`` (every problem type with a metric scored, others
counted as skipped), ``--limit N`` keeps at most N per task (``NAME%N`` keeps N % of each task).
The headline accuracy is over the items whose metric is accuracy (multiple choice and numerical);
``per_type`` in ``--json`` and a ``per type`` line give each type's metric (accuracy, WER, ROUGE,
MRA) with its 95 % interval.
Each model is answered with the same decoding (greedy unless ``--preset video_r1``) and scored with
``trainer.eval.benchmark``. With ``--db`` each evaluation is stored against its checkpoint row with the
dataset fingerprint and the settings; an evaluation of the same checkpoint with the same key is
reused instead of run again (``--rerun`` forces it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError
from trainer.eval import answering
from trainer.eval.answering import DEFAULT_MAX_NEW_TOKENS, processes_state, recorded_job, video_config_for
from trainer.eval.checkpoints import (
    check_checkpoint,
    check_trained_mode,
    checkpoint_row_for,
    trained_on,
    trained_on_config,
    trained_settings,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoding:
    """How answers are generated; ``temperature`` 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None: as the checkpoint was trained
    max_frames: int | None = None  # None: as trained
    max_pixels: int | None = None


# Video-R1's evaluation (followed by Video-ToC's eval.py): vLLM SamplingParams(temperature=0.1,
# top_p=0.001, max_tokens=1024); frames and pixels are arguments of its eval script, 32 frames at
# 256*28*28 pixels in its README's benchmark table.
PRESETS = {
    "greedy": Decoding(),
    "video_r1": Decoding(
        temperature=0.1, top_p=0.001, max_new_tokens=1024, max_frames=32, max_pixels=256 * 28 * 28
    ),
}


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoints",
        default=None,
        help="with --run: 'all', 'latest' or checkpoint folders separated by commas",
    )
    p.add_argument("--base", action="store_true", help="also evaluate the run's base model (needs --run)")
    p.add_argument("--limit", type=int, default=None, help="at most N records per task (stratified, seeded)")
    p.add_argument(
        "--video-root",
        "--video_root",
        dest="video_root",
        default=None,
        help="folder the media paths start in",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="greedy", help="decoding preset")
    p.add_argument(
        "--rerun", action="store_true", help="evaluate again even when a stored evaluation matches"
    )


def model_paths(store: Any, args: argparse.Namespace) -> list[str]:
    """The models to evaluate, base first, then checkpoints by step (see the module docstring)."""
    paths: list[str] = []
    if (args.base or args.checkpoints) and not args.run:
        raise ConfigError("--base and --checkpoints need --run RUN")
    if args.run and (args.base or args.checkpoints):
        if store is None:
            raise ConfigError("--run with --base/--checkpoints needs --db URL (the run database)")
        run = store.resolve_run(args.run)
        if args.base:
            config = store.get_config(run.id)
            base = ((config.config if config else {}).get("model") or {}).get("model_name_or_path")
            if not base:
                raise ConfigError(f"run {run.name}: its config names no model.model_name_or_path")
            paths.append(check_checkpoint(base))
            args.base_path = paths[0]
        saved = store.checkpoints(run.id)
        if args.checkpoints in ("all", "latest"):
            if not saved:
                raise ConfigError(f"run {run.name} has no checkpoints on disk")
            chosen = saved if args.checkpoints == "all" else saved[-1:]
            paths.extend(check_checkpoint(c.path) for c in chosen)
        elif args.checkpoints:
            paths.extend(check_checkpoint(p.strip()) for p in args.checkpoints.split(",") if p.strip())
    if args.checkpoint:
        paths.append(check_checkpoint(args.checkpoint))
    if not paths:
        raise ConfigError(
            "nothing to evaluate: give --checkpoint PATH, or --run RUN with --checkpoints/--base"
        )
    return list(dict.fromkeys(paths))


def settings_for(args: argparse.Namespace, path: str) -> tuple[Any, dict[str, Any]]:
    """(VideoConfig, settings dict) for one model: preset, then flags, then as trained, then defaults."""
    preset = PRESETS[args.preset]
    trained_video, trained_length = trained_settings(path) if Path(path).is_dir() else ({}, None)
    for name in ("max_frames", "max_pixels"):
        if getattr(args, name) is None and getattr(preset, name) is not None:
            setattr(args, name, getattr(preset, name))
    video_cfg = video_config_for(args, trained_video)
    max_new_tokens = args.max_new_tokens or preset.max_new_tokens or trained_length or DEFAULT_MAX_NEW_TOKENS
    settings = {
        "preset": args.preset,
        "temperature": preset.temperature,
        "top_p": preset.top_p,
        "max_new_tokens": max_new_tokens,
        "video": video_cfg.to_dict(),
    }
    return video_cfg, settings


def eval_key(dataset_fingerprint: str, settings: dict[str, Any]) -> str:
    """Same records + same decoding -> same key (the checkpoint is the row it hangs on)."""
    doc = json.dumps({"dataset": dataset_fingerprint, "settings": settings}, sort_keys=True)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def result_doc(
    path: str, ckpt: Any, evaluation: Any, summary: dict[str, Any], settings: dict, rows: list[dict]
) -> dict[str, Any]:
    """One model's JSON: the benchmark summary, where it is stored, its records, and the flat
    fields (accuracy, format_rate, num_records, confusion) earlier versions of ``--json`` wrote."""
    from trainer.data.problem_types import MULTIPLE_CHOICE
    from trainer.eval.benchmark import stored_answer, stored_choice, stored_type

    confusion: dict[str, dict[str, int]] = {}
    for row in rows:
        if stored_type(row) != MULTIPLE_CHOICE:
            continue  # option letters only
        picks = confusion.setdefault(stored_answer(row), {})
        picks[stored_choice(row)] = picks.get(stored_choice(row), 0) + 1
    overall = summary.get("overall", {})
    return {
        "checkpoint": path,
        "accuracy": overall.get("accuracy"),
        "format_rate": overall.get("format_rate"),
        "num_records": overall.get("n"),
        "step": ckpt.step if ckpt is not None else None,
        **summary,
        "settings": settings,
        "run_id": ckpt.run_id if ckpt is not None else None,
        "checkpoint_id": ckpt.id if ckpt is not None else None,
        "evaluation_id": evaluation.id if evaluation is not None else None,
        "confusion": confusion,
        "records": rows,
    }


def _answer(
    args: argparse.Namespace,
    path: str,
    items: list,
    video_cfg: Any,
    settings: dict,
    processes: Any,
    on_progress: Any = None,
) -> list[str]:
    """The completion of each item, in order (trainer.eval.evaluate answers; this only lines them up)."""
    records = [item.record for item in items]
    result = answering.answer_records(args, path, records, video_cfg, settings, processes, on_progress)
    by_id: dict[str, str] = {}
    for row in result.records:
        by_id.setdefault(row["id"], row["completion"])
    if len(by_id) == len(records):  # ids unique: robust to any gather order
        return [by_id[r.id] for r in records]
    return [row["completion"] for row in result.records]


def plan(args: argparse.Namespace, store: Any, key: str) -> list[tuple[str, Any, Any]]:
    """(path, checkpoint row, stored evaluation to reuse or None) per model; the main process
    decides (it alone holds the run database) and the others follow its plan."""
    rows = []
    for path in args.model_paths:
        # The base model is filed under its own "eval-<name>" run, never as a checkpoint of the run
        # (deleting a run's checkpoints must not touch it); the same base is then shared by runs.
        run_ref = None if path == getattr(args, "base_path", None) else args.run
        ckpt = checkpoint_row_for(store, path, run_ref) if store is not None else None
        stored = store.find_evaluation(ckpt.id, key) if ckpt is not None and not args.rerun else None
        rows.append((path, ckpt, stored))
    return rows


def batch_progress(handle: Any, before: int, total: int) -> Any:
    """The job's progress callback for one model: its bar moves per answered batch, not only per
    model (``before`` records were answered by the models already done). None without a job."""
    if handle is None:
        return None
    return lambda answered: handle.progress(before + answered, total)


def evaluate_models(
    args: argparse.Namespace, store: Any, handle: Any, bench: Any, items: list, processes: Any
) -> list[dict]:
    """Evaluate (or reuse) every model on ``items``; one result document per model (main process)."""
    from trainer.eval.benchmark import fingerprint, score_items, summarize

    dataset_fp = fingerprint(items)
    docs: list[dict[str, Any]] = []
    # One decoding for every model, the newest checkpoint's (it carries the trained video settings):
    # base and checkpoints answer the same records the same way, and share one key.
    video_cfg, settings = settings_for(args, args.model_paths[-1])
    key = eval_key(dataset_fp, settings)
    todo = plan(args, store, key) if processes.is_main_process else None
    if processes.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        todo = broadcast_object_list([todo])[0]
    for done, (path, ckpt, stored) in enumerate(todo):
        if stored is not None and not processes.is_main_process:
            continue
        if stored is not None:
            logger.info("reusing evaluation %d of %s (same records and settings)", stored.id, path)
            docs.append(
                {
                    **result_doc(
                        path,
                        ckpt,
                        stored,
                        dict(stored.summary or {}),
                        settings,
                        [dict(r) for r in stored.results],
                    ),
                    "reused": True,
                }
            )
        else:
            progress = batch_progress(handle, done * len(items), len(args.model_paths) * len(items))
            completions = _answer(args, path, items, video_cfg, settings, processes, progress)
            if not processes.is_main_process:
                continue
            report = summarize(score_items(items, completions), bench.skipped)
            summary = report.summary()
            evaluation = None
            if ckpt is not None and store is not None:
                evaluation = store.add_evaluation(
                    ckpt.id,
                    args.dataset_use,
                    accuracy=report.overall.accuracy,
                    format_rate=report.overall.format_rate,
                    results=[row.to_dict() for row in report.rows],
                    eval_key=key,
                    dataset_fingerprint=dataset_fp,
                    settings=settings,
                    summary=summary,
                )
                store.add_event(
                    ckpt.run_id,
                    "evaluation",
                    f"step {ckpt.step} on {args.dataset_use}: accuracy {report.overall.accuracy:.3f} "
                    f"[{report.overall.ci_low:.3f}, {report.overall.ci_high:.3f}], format "
                    f"{report.overall.format_rate:.3f} ({report.overall.n} records)",
                )
            docs.append(
                {
                    **result_doc(
                        path, ckpt, evaluation, summary, settings, [r.to_dict() for r in report.rows]
                    ),
                    "reused": False,
                }
            )
        if handle is not None:
            handle.progress((done + 1) * len(items), len(args.model_paths) * len(items))
    return docs


def run(args: argparse.Namespace) -> int:
    from trainer.core.paths import default_workspace
    from trainer.eval.benchmark import stratified_subset
    from trainer.eval.benchmark_data import load_benchmark
    from trainer.rundb.lifecycle import RunAborted

    if args.max_records is not None and args.max_records < 1:
        raise ConfigError(f"--max_records must be >= 1, got {args.max_records}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {args.batch_size}")
    workspace = args.workspace if args.workspace is not None else default_workspace()
    bench = load_benchmark(args.dataset_use, workspace, video_root=args.video_root, seed=args.seed)
    items = stratified_subset(bench.items, limit=args.limit, seed=args.seed)
    if args.max_records is not None:
        items = items[: args.max_records]
    # Open the DB before the slow part, so a bad URL or run fails in a second.
    # Under `accelerate launch` every process answers its share of the records (the main process
    # alone stores and reports); run plainly it is one process.
    processes = processes_state()
    store = None
    if args.db and processes.is_main_process:
        from trainer.rundb import RunStore

        store = RunStore(args.db)
    out = sys.stdout if args.json != "-" else sys.stderr  # `--json -` keeps stdout pure JSON
    try:
        shared: list[Any] = [None, None]
        if processes.is_main_process:
            shared = [model_paths(store, args), getattr(args, "base_path", None)]
            check_answer_format(store, args, shared[0], shared[1], bench, workspace)
        if processes.num_processes > 1:  # the run's checkpoints are read by the main process only
            from accelerate.utils import broadcast_object_list

            shared = broadcast_object_list(shared)
        args.model_paths, args.base_path = shared
        first = checkpoint_row_for_first(store, args)
        total = len(items) * len(args.model_paths)
        job = recorded_job(store, args, first, total) if store is not None else nullcontext(None)
        with job as handle:
            docs = evaluate_models(args, store, handle, bench, items, processes)
            if handle is not None:
                handle.result.update(
                    accuracy=docs[-1]["overall"]["accuracy"],
                    format_rate=docs[-1]["overall"]["format_rate"],
                    evaluation_ids=[d["evaluation_id"] for d in docs],
                    evaluation_id=docs[-1]["evaluation_id"],
                    checkpoint_id=docs[-1]["checkpoint_id"],
                    run_id=docs[-1]["run_id"],
                )
    except RunAborted as exc:
        print(f"vgrpo eval: cancelled ({exc})", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.close()
    if not processes.is_main_process:
        return 0
    for doc in docs:
        o = doc["overall"]
        print(
            f"eval {args.dataset_use}: accuracy {o['accuracy']:.4f} [{o['ci_low']:.4f}, {o['ci_high']:.4f}], "
            f"format rate {o['format_rate']:.4f} on {o['n']} records · {Path(doc['checkpoint']).name}"
            + (f" (reused evaluation {doc['evaluation_id']})" if doc["reused"] else "")
            + (
                f"; stored evaluation {doc['evaluation_id']}"
                if doc["evaluation_id"] and not doc["reused"]
                else ""
            ),
            file=out,
        )
        if doc.get("per_type"):
            print(per_type_line(doc["per_type"]), file=out)
    if bench.skipped:
        print(
            "skipped (no metric for the type): " + ", ".join(f"{k} {v}" for k, v in bench.skipped.items()),
            file=out,
        )
    if args.json is not None:
        write_json(args, docs)
    return 0


def per_type_line(per_type: list[dict[str, Any]]) -> str:
    """``per type: multiple choice accuracy 0.5000 [0.0945, 0.9055] n=2; OCR wer 0.4444 n=1``: each
    type's metric, its interval when it has one, and its count."""
    parts = []
    for s in per_type:
        interval = s.get("interval")
        bounds = f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        parts.append(f"{s['type']} {s['metric']} {s['value']:.4f}{bounds} n={s['n']}")
    return "per type: " + "; ".join(parts)


def check_answer_format(
    store: Any, args: argparse.Namespace, paths: list[str], base_path: str | None, bench: Any, workspace: Path
) -> None:
    """Refuse, before anything loads, an eval set whose think/no_think mode is not the one a model
    was trained in (accuracy and format would be 0.000 on every record): a checkpoint's by its
    train_config.yaml, a run's base model (``--base``) by the run's config. A model trained
    elsewhere has no mode to keep."""
    eval_modes = sorted({item.record.mode for item in bench.items})
    for path in paths:
        if path == base_path:
            run = store.resolve_run(args.run)
            config = store.get_config(run.id)
            trained, whose = trained_on_config(config.config if config else None), f"run {run.name}"
        else:
            trained, whose = trained_on(path), Path(path).name
        if trained is not None:
            check_trained_mode(args.dataset_use, eval_modes, whose, trained, workspace)


def checkpoint_row_for_first(store: Any, args: argparse.Namespace) -> Any:
    """The checkpoint row the job is filed under (its run): the last model's, as it is the newest."""
    return checkpoint_row_for(store, args.model_paths[-1], args.run) if store is not None else None


def write_json(args: argparse.Namespace, docs: list[dict[str, Any]]) -> None:
    """One object: a single model's result, or ``{"dataset", "models": [...]}`` for several."""
    doc: dict[str, Any] = (
        {"dataset": args.dataset_use, **docs[0]}
        if len(docs) == 1
        else {
            "dataset": args.dataset_use,
            "models": docs,
        }
    )
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if args.json == "-":
        sys.stdout.write(text + "\n")
        return
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
