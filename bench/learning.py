"""Does GRPO learn? The embedded tiny Qwen2.5-VL on the synthetic motion dataset, on the CPU.

Measures held-out accuracy of the warm-started model, trains GRPO for a fixed wall-clock budget
with periodic held-out evaluations (through `accelerate launch`, two CPU processes by default), and
writes the curve (CSV + interactive HTML) under --out. Ends with one line:

    learning: before=A after=B format=F seconds=S

(held-out accuracy before and after, final format reward = mean over the last 20 steps, wall
seconds of the training command: start-up, 570 s of training, evaluations).

    .venv/bin/python bench/learning.py --seed 0
    .venv/bin/python bench/learning.py --model assets/tiny-qwen2-vl   # another model family
    .venv/bin/python bench/learning.py --model assets/tiny-qwen3-vl   # 32 px tokens: pixels rescaled
    .venv/bin/python bench/learning.py --config configs/tiny_cpu_numerical.yaml \
        --dataset synthetic_motion_numerical_no_think_train       # another training dataset

A --model whose visual token covers another area than the preset's model's (Qwen3-VL: 32 x 32 px,
Qwen2/2.5-VL: 28 x 28) trains on the preset's pixel knobs rescaled to the same tokens per frame
(``VideoConfig.for_token_size``); a line says so. --dataset trains on another registered dataset and
evaluates on its ``_eval`` twin (the name with ``_train`` replaced by ``_eval``) unless
--eval-dataset names one.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As in `vgrpo`: passive OpenMP waits, set before torch loads (see trainer/cli/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from trainer.core import metrics_keys as mk  # noqa: E402
from trainer.core.config import TrainConfig, build_config, load_yaml, merge  # noqa: E402
from trainer.core.paths import REPO_ROOT, resolve_repo_path  # noqa: E402
from trainer.data import load_dataset_use  # noqa: E402
from trainer.eval.evaluate import EvalResult, evaluate  # noqa: E402
from trainer.model.families import family_of_path  # noqa: E402
from trainer.model.loading import generation_kwargs, load_policy  # noqa: E402
from trainer.run.launch import training_command  # noqa: E402
from trainer.rundb import ENDED_EARLY_EVENT, RunStore  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="vgrpo-learning-"))
    cfg = _config(args, workspace)

    before = _evaluate_before(cfg, workspace, args.eval_records)
    print(f"before: accuracy {before.accuracy:.3f}, format {before.format_rate:.3f}", flush=True)
    log_path = out / f"train_seed{args.seed}.log"
    returncode, seconds = _train(cfg, workspace, args.processes, log_path)
    if returncode != 0:
        print(f"training failed (exit {returncode}); see {log_path}", file=sys.stderr)
        return 1
    store = RunStore(cfg.run.db or f"sqlite:///{workspace / 'runs.db'}")
    _report(store, out, args.seed, before.accuracy, seconds)
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "tiny_cpu.yaml"))
    parser.add_argument(
        "--model",
        default=None,
        help="model to train instead of the config's (e.g. assets/tiny-qwen3-vl); the preset's pixel "
        "knobs are rescaled when its visual token covers another area",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="training dataset instead of the config's (a registered name, e.g. "
        "synthetic_motion_numerical_no_think_train); held out: --eval-dataset, else its _eval twin",
    )
    parser.add_argument(
        "--eval-dataset",
        default=None,
        help="held-out dataset (default: --dataset with _train replaced by _eval, else the config's)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=570.0,
        help="training budget (start-up and the final eval come on top)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100, help="held-out evaluation every N steps")
    parser.add_argument("--eval-records", type=int, default=200)
    parser.add_argument(
        "--early-stop-accuracy",
        type=float,
        default=0.0,
        help="end training once the mean train accuracy reward of the last 20 steps reaches this "
        "(the run's early_stop_accuracy; 0: train for the whole budget)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--processes", type=int, default=2, help="training processes (accelerate, gloo)")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "learning"))
    return parser.parse_args(argv)


def _config(args: argparse.Namespace, workspace: Path) -> TrainConfig:
    """The run's config: --config with the benchmark's budget, cadence and seed, in ``workspace``
    (and --model, on the preset's pixel knobs rescaled to its visual token)."""
    preset = load_yaml(args.config)
    if args.model:
        preset = _for_model(preset, args.model)
    preset = merge(preset, _datasets(args.dataset, args.eval_dataset))
    return build_config(
        merge(
            preset,
            {
                "seed": args.seed,
                "workspace": str(workspace),
                "max_steps": 1_000_000,
                "max_train_seconds": args.seconds,
                "early_stop_accuracy": args.early_stop_accuracy,
                "early_stop_window": 20,
                "eval_steps": args.eval_every,
                "eval_max_records": args.eval_records,
                "save_steps": 1_000_000,
                "run_name": f"learning-seed{args.seed}",
                "num_threads": args.threads,
                "num_processes": args.processes,
            },
        )
    )


def _datasets(train: str | None, held_out: str | None) -> dict[str, str]:
    """The config overrides --dataset / --eval-dataset ask for: the held-out set defaults to the
    training set's ``_eval`` twin.

    >>> _datasets("synthetic_motion_numerical_no_think_train", None)["eval_dataset_use"]
    'synthetic_motion_numerical_no_think_eval'
    """
    overrides = {}
    if train:
        overrides["dataset_use"] = train
        if held_out is None and "_train" not in train:
            raise SystemExit(f"--dataset {train}: no _train in the name, so give --eval-dataset")
        held_out = held_out or train.replace("_train", "_eval")
    if held_out:
        overrides["eval_dataset_use"] = held_out
    return overrides


def _for_model(preset: dict, model: str) -> dict:
    """``preset`` training ``model``: its pixel knobs rescaled (same tokens per frame) when a visual
    token of ``model``'s family covers another area than one of the preset's model's family."""
    base = build_config(preset)
    was = family_of_path(resolve_repo_path(base.model.model_name_or_path)).pixels_per_token
    now = family_of_path(resolve_repo_path(model)).pixels_per_token
    video = base.video
    if now != was:
        video = video.for_token_size(was, now)
        print(
            f"--model {model}: one visual token covers {now} px (the preset's model: {was}); pixel "
            f"knobs rescaled: min_pixels {base.video.min_pixels} -> {video.min_pixels}, max_pixels "
            f"{base.video.max_pixels} -> {video.max_pixels}",
            flush=True,
        )
    return merge(preset, {"model_name_or_path": model, "video": video.to_dict()})


def _evaluate_before(cfg: TrainConfig, workspace: Path, eval_records: int) -> EvalResult:
    """The warm-started model, greedy, on the first ``eval_records`` of the held-out split."""
    model, processor = load_policy(resolve_repo_path(cfg.model.model_name_or_path))
    records = load_dataset_use(cfg.data.eval_dataset_use, workspace, cfg.run.seed)[:eval_records]
    greedy = generation_kwargs(processor, cfg.grpo.generation_max_length, do_sample=False)
    before = evaluate(model, processor, records, cfg.video, greedy)
    del model
    return before


def _train(cfg: TrainConfig, workspace: Path, processes: int, log_path: Path) -> tuple[int, float]:
    """Train through the real command line, as a user would; returns its exit code and wall seconds.

    `accelerate launch` with ``processes`` CPU processes (gloo DDP; on 2 cores two 1-thread
    processes step ~1.8x faster than one 2-thread process); the results go to the run database.
    """
    config_path = workspace / "learning.yaml"
    config_path.write_text(cfg.to_yaml())
    train_cmd = ["-m", "trainer.cli", "train", "--config", str(config_path)]
    cmd = training_command(sys.executable, processes, train_cmd)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    return proc.returncode, time.perf_counter() - start


def _report(store: RunStore, out: Path, seed: int, before: float, seconds: float) -> None:
    """The run's results, read back from ``store``: held-out accuracies, early end, the curve
    (CSV + HTML under ``out``) and the final ``learning:`` line."""
    [run] = store.list_runs()
    series = store.metrics_since(run.id)
    steps = list(series[mk.ACCURACY_REWARD].steps)
    history = [
        {
            "step": step,
            **{name: s.values[s.steps.index(step)] for name, s in series.items() if step in s.steps},
        }
        for step in steps
    ]
    evaluations = store.evaluations(run.id)
    after = evaluations[-1].accuracy if evaluations else float("nan")
    tail = history[-20:]
    final_format = sum(h[mk.FORMAT_REWARD] for h in tail) / max(len(tail), 1)
    first_wall = series[mk.ACCURACY_REWARD].wall_times[0] if steps else 0.0
    reached = None
    for h in history:
        if mk.EVAL_ACCURACY in h:
            print(f"  step {h['step']:5d}  held-out accuracy {h[mk.EVAL_ACCURACY]:.3f}")
            if reached is None and h[mk.EVAL_ACCURACY] >= 0.9:
                wall = series[mk.EVAL_ACCURACY].wall_times[series[mk.EVAL_ACCURACY].steps.index(h["step"])]
                reached = (h["step"], wall - first_wall)
    if reached:
        print(f"held-out accuracy first >= 0.9 at step {reached[0]}, {reached[1]:.0f} s after the first step")
    for event in store.events(run.id):
        if event.kind == ENDED_EARLY_EVENT:
            print(f"ended early: {event.message}")

    curve = out / f"curve_seed{seed}.csv"
    _write_curve(history, curve)
    _plot(history, before, after, out / f"curve_seed{seed}.png")
    print(f"steps {len(history)}, mean step {seconds / max(len(history), 1):.3f}s, curve {curve}")
    print(f"learning: before={before:.3f} after={after:.3f} format={final_format:.3f} seconds={seconds:.0f}")


def _write_curve(history: list[dict], path: Path) -> None:
    """One CSV row a step: train rewards, KL, step time and (where evaluated) held-out accuracy."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "accuracy_reward", "format_reward", "kl", "step_s", "eval_accuracy"])
        for h in history:
            writer.writerow(
                [
                    h["step"],
                    h[mk.ACCURACY_REWARD],
                    h[mk.FORMAT_REWARD],
                    h[mk.KL_DIV],
                    h[mk.TIME_STEP_S],
                    h.get(mk.EVAL_ACCURACY, ""),
                ]
            )


def _plot(history: list[dict], before: float, after: float, path: Path) -> None:
    """The curve as an interactive plotly HTML page (no image exporter needed)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    steps = [h["step"] for h in history]
    fig.add_scatter(
        x=steps, y=[h[mk.ACCURACY_REWARD] for h in history], name="train accuracy reward", opacity=0.4
    )
    evals = [(h["step"], h[mk.EVAL_ACCURACY]) for h in history if mk.EVAL_ACCURACY in h]
    fig.add_scatter(
        x=[0] + [s for s, _ in evals],
        y=[before] + [a for _, a in evals],
        name="held-out accuracy",
        mode="lines+markers",
    )
    fig.add_scatter(x=steps, y=[h[mk.FORMAT_REWARD] for h in history], name="format reward", opacity=0.4)
    fig.update_layout(
        title=f"GRPO on the tiny model: {before:.2f} -> {after:.2f}",
        xaxis_title="step",
        yaxis_range=[0, 1.05],
    )
    fig.write_html(path.with_suffix(".html"))


if __name__ == "__main__":
    sys.exit(main())
