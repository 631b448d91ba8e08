"""Run-database benchmark: the trainer's write overhead and the studio's live-plot query.

    .venv/bin/python bench/rundb_bench.py [--steps 40] [--step-ms 140] [--rows 100000]

(a) Steps of simulated tiny-model work (~140 ms of torch matmuls) alternate with and without a
    MetricsWriter logging 12 metrics + 8 rollouts, so machine noise hits both sides alike; the ratio
    of median step times is the writer's overhead (target < 2%).
(b) A run with 100k metric rows; the live-plot refresh query (metrics since step N) and a full load.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.core.metrics_keys import ALL_METRICS  # noqa: E402
from trainer.rundb import MetricPoint, MetricsWriter, Rollout, RunStore  # noqa: E402

METRICS_PER_STEP = ALL_METRICS[:12]
ROLLOUTS_PER_STEP = 8  # 2 prompts x grpo_sample_size 4


def make_work(step_ms: float) -> tuple[callable, float]:  # type: ignore[valid-type]
    """A function doing about ``step_ms`` of matmuls (releases the GIL, like a real step)."""
    a = torch.randn(384, 384)

    def run(n: int) -> None:
        x = a
        for _ in range(n):
            x = torch.tanh(x @ a)

    run(20)  # warm up allocator and kernels before timing
    per_iter_s = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run(20)
        per_iter_s = min(per_iter_s, (time.perf_counter() - t0) / 20)
    n = max(1, round(step_ms / 1000 / per_iter_s))
    return (lambda: run(n)), n * per_iter_s * 1000


def rollouts(step: int) -> list[Rollout]:
    return [
        Rollout(
            step=step,
            prompt_id=f"q_{step}_{g // 4}",
            group_index=g % 4,
            question="Which way does the red ball move?",
            completion="<think>It starts left and ends right.</think> <answer>(B) right</answer>",
            options={"A": "left", "B": "right", "C": "up", "D": "down"},
            video_path=f"videos/{step}.mp4",
            correct_letter="B",
            think="It starts left and ends right.",
            answer="B",
            format_reward=1.0,
            accuracy_reward=1.0,
            total_reward=1.0,
            advantage=0.0,
            log_prob=-12.5,
        )
        for g in range(ROLLOUTS_PER_STEP)
    ]


def bench_writer(store: RunStore, steps: int, step_ms: float) -> None:
    work, planned_ms = make_work(step_ms)
    run = store.create_run("bench-writer")
    with_writer: list[float] = []
    without: list[float] = []
    log_costs: list[float] = []
    with MetricsWriter(store, run.id) as writer:
        for step in range(steps):
            # Swap the order every pair so drift (turbo, other processes) hits both sides alike.
            for logs in (True, False) if step % 2 else (False, True):
                t0 = time.perf_counter()
                work()
                if not logs:
                    without.append(time.perf_counter() - t0)
                    continue
                t1 = time.perf_counter()
                writer.log_metrics(step, {name: step * 0.01 + i for i, name in enumerate(METRICS_PER_STEP)})
                writer.log_rollouts(rollouts(step))
                t2 = time.perf_counter()
                with_writer.append(t2 - t0)
                log_costs.append(t2 - t1)
        t0 = time.perf_counter()
    close_ms = (time.perf_counter() - t0) * 1000
    assert store.count_rows(run.id) == {"metrics": steps * 12, "rollouts": steps * ROLLOUTS_PER_STEP}

    t0 = time.perf_counter()
    for step in range(steps, steps + 20):
        store.log_metrics(run.id, step, {name: 1.0 for name in METRICS_PER_STEP})
    sync_ms = (time.perf_counter() - t0) / 20 * 1000

    med_with, med_without = statistics.median(with_writer) * 1000, statistics.median(without) * 1000
    ratio = med_with / med_without - 1
    print(
        f"(a) writer overhead: {ratio * 100:+.2f}% per step (median {med_with:.1f} ms with writer vs "
        f"{med_without:.1f} ms without, simulated step ~{planned_ms:.0f} ms, {steps} alternating pairs, "
        f"12 metrics + {ROLLOUTS_PER_STEP} rollouts/step); log calls on the training thread "
        f"{statistics.median(log_costs) * 1000:.3f} ms/step median; final flush {close_ms:.1f} ms; "
        f"for comparison a synchronous 12-metric commit costs {sync_ms:.2f} ms"
    )


def bench_live_plot(store: RunStore, n_rows: int) -> None:
    run = store.create_run("bench-plot")
    other = store.create_run("bench-plot-neighbour")
    n_steps = math.ceil(n_rows / len(METRICS_PER_STEP))
    chunk: list[MetricPoint] = []
    t0 = time.perf_counter()
    for step in range(n_steps):
        chunk.extend(
            MetricPoint(step, name, step * 0.001 + i, 1.0e9 + step) for i, name in enumerate(METRICS_PER_STEP)
        )
        if len(chunk) >= 12_000:
            store.write_rows(run.id, chunk, [])
            store.write_rows(other.id, chunk, [])
            chunk = []
    if chunk:
        store.write_rows(run.id, chunk, [])
        store.write_rows(other.id, chunk, [])
    fill_s = time.perf_counter() - t0
    total = store.count_rows(run.id)["metrics"]

    after = n_steps - 10
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        series = store.metrics_since(run.id, after_step=after)
        times.append(time.perf_counter() - t0)
    assert all(len(s.steps) == 9 for s in series.values()), "wrong number of new points"

    t0 = time.perf_counter()
    full = store.metrics_since(run.id)
    full_ms = (time.perf_counter() - t0) * 1000
    assert sum(len(s.steps) for s in full.values()) == total

    t0 = time.perf_counter()
    store.compare_runs([run.id, other.id], METRICS_PER_STEP[:2])
    compare_ms = (time.perf_counter() - t0) * 1000
    print(
        f"(b) live-plot query: metrics since step {after} of a run with {total:,} metric rows "
        f"(and a neighbour run of the same size): median {statistics.median(times) * 1000:.2f} ms, "
        f"p95 {sorted(times)[int(len(times) * 0.95)] * 1000:.2f} ms over {len(times)} refreshes; "
        f"full history {full_ms:.0f} ms; 2 runs x 2 metrics comparison {compare_ms:.0f} ms "
        f"(filled in {fill_s:.1f} s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40, help="alternating step pairs for (a)")
    parser.add_argument("--step-ms", type=float, default=140.0, help="simulated step duration for (a)")
    parser.add_argument("--rows", type=int, default=100_000, help="metric rows of the run for (b)")
    parser.add_argument("--db", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        with RunStore(url) as store:
            print(f"run database: {url}  (torch threads {torch.get_num_threads()})")
            bench_writer(store, args.steps, args.step_ms)
            bench_live_plot(store, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
