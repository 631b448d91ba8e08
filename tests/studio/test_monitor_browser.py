"""The Monitor in a real Chromium watching a live run of the real trainer (issue 24):

- for 2 minutes the page keeps its main thread busy under 20 % of the time and its JS heap grows
  under 50 MB (Chrome's own Performance metrics over CDP, measured by bench/studio_load.py's
  ``page_cost`` in bench/studio_load_page.py; the bench's numbers in the README come from the same code);
- a Refresh click shows a step the run database holds in under 1 s (median of 5);
- a chart scrolled into view is drawn then, with every point it missed;
- the page asks the server nothing while another tab is shown, and nothing once the run has ended.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM_ARGS, StudioProcess, open_tab, pick_option, running_studio, wait_for_plot
from studio_helpers import wait_for

from studio.context import StudioContext
from studio.supervisor import Launched, Supervisor
from tests.helpers.bench import load_bench as load_bench_script
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.core.paths import TINY_MODEL_DIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# One minute of watching: 12 polls and about 60 steps of a live run; the bench (bench/studio_load_page.py)
# watches longer. It was 120 s until CI's 45 minutes ran short (issue 22 added the numerical learning test).
WATCH_S = 60.0
# The page before its rework was busy 0.85 of the time. After it: 0.125 in the bench, and on 2 cores
# beside a live trainer 0.12-0.18 from run to run (0.179 seen once): 0.2 still fails a regression.
BUSY_LIMIT = 0.2
HEAP_GROWTH_LIMIT_MB = 50.0
REFRESH_LIMIT_MS = 1000.0
UI_TIMEOUT_MS = 60_000
POLL_PATH = "/component_server"
RECENT_POINTS = 1000  # studio/static/monitor_charts.js: the newest points a long series keeps exact


def load_bench() -> Any:
    """bench/studio_load_page.py, the bench's page measurement."""
    return load_bench_script("studio_load_page")


def long_run(workspace: Path) -> Any:
    """The tiny model on the synthetic task, long enough for every window of the test (aborted after)."""
    return build_config(
        {
            "model_name_or_path": str(TINY_MODEL_DIR),
            "dataset_use": "synthetic_motion_train%5",
            "run_name": "watched",
            "fps": 8.0,
            "max_frames": 8,
            "min_pixels": 3136,
            "max_pixels": 3136,
            "grpo_sample_size": 2,
            "generation_max_length": 12,
            "per_device_train_batch_size": 2,
            "max_steps": 100_000,
            "save_steps": 100_000,
            "grpo_logging_steps": 25,  # the tiny CPU preset's: rollouts every few seconds
            "seed": 7,
            "num_threads": 1,
            "output_dir": str(workspace / "outputs" / "watched"),
        }
    )


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[StudioProcess]:
    workspace = tmp_path / "workspace"
    with running_studio(workspace, tmp_path / "studio.log") as proc:
        yield proc


@pytest.fixture
def live(studio: StudioProcess) -> Iterator[tuple[Supervisor, Launched]]:
    ctx = StudioContext(studio.workspace)
    supervisor = Supervisor(ctx, grace_s=30.0)
    launched = supervisor.start(long_run(studio.workspace))
    try:
        yield supervisor, launched
    finally:
        if ctx.store.get_run(launched.run.id).is_active:
            supervisor.abort(launched.run.id)
        ctx.store.close()


def test_a_page_watching_a_live_run_costs_little_and_answers_refresh_at_once(
    chromium: Path, studio: StudioProcess, live: tuple[Supervisor, Launched]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    bench = load_bench()
    supervisor, launched = live
    run_id, store = launched.run.id, supervisor.ctx.store
    expect.set_options(timeout=UI_TIMEOUT_MS)
    errors: list[str] = []
    polls: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: polls.append(r.timing["startTime"]) if POLL_PATH in r.url else None)
            page.goto(studio.url)
            open_tab(page, "Monitor")
            pick_option(page, "monitor-run", f"#{run_id} watched (running)")
            wait_for_plot(page, "monitor-plot-grpo", min_traces=6, min_points=2)
            page.wait_for_timeout(10_000)  # settle: the first draws are not what a watching page costs

            cost = bench.page_cost(page, WATCH_S)
            steps = store.metrics_since(run_id, names=[mk.TOTAL_REWARD])[mk.TOTAL_REWARD].steps
            seen = f"busy {cost.busy:.1%} of {cost.seconds:.0f} s, heap +{cost.heap_growth_mb:.1f} MB"
            assert cost.busy < BUSY_LIMIT, seen
            assert cost.heap_growth_mb < HEAP_GROWTH_LIMIT_MB, seen
            assert len(steps) > 50  # the run really ran while the page watched

            refresh_ms = bench.refresh_latency_ms(page, store, run_id, n=5)
            assert statistics.median(refresh_ms) < REFRESH_LIMIT_MS, [round(ms) for ms in refresh_ms]

            # The Timings charts were below the fold: scrolled into view, they draw every point they
            # missed, up to the newest step. (A series over the page's MAX_POINTS, 3000, keeps its
            # newest RECENT_POINTS, 1000, and every other older one: a fast machine gets there.)
            wait_for_plot(
                page,
                "monitor-plot-timings",
                min_traces=6,
                min_points=min(len(steps), RECENT_POINTS),  # the newest points are always exact
                min_last_x=steps[-1],
            )

            # Another tab shown: no request for two poll periods.
            open_tab(page, "Runs")
            page.wait_for_timeout(1000)
            before = len(polls)
            page.wait_for_timeout(11_000)
            assert len(polls) == before, "the hidden Monitor kept polling"
            open_tab(page, "Monitor")
            wait_for(lambda: len(polls) > before, 10, "a poll once the Monitor is shown again")

            # The run ends: the page shows it, then asks nothing more.
            supervisor.abort(run_id)
            expect(page.locator("#monitor-status")).to_contain_text("aborted", timeout=120_000)
            # The poll whose news showed the end may have come a moment before the run row ended:
            # one more poll then says so.
            page.wait_for_timeout(6000)
            ended = len(polls)
            page.wait_for_timeout(11_000)
            assert len(polls) == ended, "the page kept polling an ended run"
            assert errors == [], errors
        finally:
            browser.close()
