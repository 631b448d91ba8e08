"""One Chromium page on the Monitor: what it costs (Chrome's own Performance metrics over CDP) and
how fast a Refresh click shows a newer step. Used by bench/studio_load.py and by
tests/studio/test_monitor_browser.py (the same measurement in CI); heavy imports stay inside the
functions.
"""

from __future__ import annotations

import math
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.rundb import RunStore

STEP_TEXT = re.compile(r"step (\d+)")  # in #monitor-progress: "step 12 / 1000000 (0 %) - ETA ..."
MB = 1024 * 1024


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


# ---- the run DB ------------------------------------------------------------------------------
def step_times_between(store: RunStore, run_id: int, start: float, end: float) -> list[float]:
    """``time/step_s`` of the steps whose metrics were logged between the wall times ``start`` and
    ``end`` (``time.time()`` seconds), in step order."""
    from trainer.core import metrics_keys as mk

    series = store.metrics_since(run_id, names=[mk.TIME_STEP_S]).get(mk.TIME_STEP_S)
    if series is None:
        return []
    return [v for v, wall in zip(series.values, series.wall_times, strict=True) if start <= wall <= end]


def last_logged_step(store: RunStore, run_id: int) -> int:
    """The newest step the trainer wrote to the run DB (0 before the first)."""
    from trainer.core import metrics_keys as mk

    series = store.metrics_since(run_id, names=[mk.TIME_STEP_S]).get(mk.TIME_STEP_S)
    return series.steps[-1] if series and series.steps else 0


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll ``condition`` until it returns something truthy; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        pause.wait(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class PageCost:
    """What an open Monitor page cost over ``seconds`` (Chrome's Performance metrics)."""

    seconds: float
    busy: float  # main-thread task seconds / wall seconds
    heap_start_mb: float  # JS heap in use after a forced GC
    heap_end_mb: float
    start: float = math.nan  # the window's wall times (time.time())
    end: float = math.nan
    studio_cpu: float = math.nan
    step_times_s: list[float] = field(default_factory=list)

    @property
    def heap_growth_mb(self) -> float:
        return self.heap_end_mb - self.heap_start_mb

    @property
    def trainer_step_s(self) -> float:
        return median_or_nan(self.step_times_s)


def _metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def page_cost(page: Any, seconds: float) -> PageCost:
    """Let ``page`` run ``seconds`` and read what it cost: busy = ΔTaskDuration / wall seconds, and
    the JS heap after a forced GC at the start and at the end (the end's GC comes after the last
    TaskDuration read, so it is not counted as the page's work). The server's side (studio_cpu,
    step_times_s) is left for the caller, over ``start``..``end``."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Performance.enable")
        cdp.send("HeapProfiler.collectGarbage")
        before, wall0, start = _metrics(cdp), time.perf_counter(), time.time()
        page.wait_for_timeout(seconds * 1000)  # the page's own timer runs meanwhile
        after, wall1, end = _metrics(cdp), time.perf_counter(), time.time()
        cdp.send("HeapProfiler.collectGarbage")
        heap_end = _metrics(cdp)["JSHeapUsedSize"]
    finally:
        cdp.detach()
    return PageCost(
        seconds=wall1 - wall0,
        busy=(after["TaskDuration"] - before["TaskDuration"]) / (wall1 - wall0),
        heap_start_mb=before["JSHeapUsedSize"] / MB,
        heap_end_mb=heap_end / MB,
        start=start,
        end=end,
    )


def shown_step(page: Any) -> int:
    """The step the Monitor's progress line shows (0 before the first)."""
    match = STEP_TEXT.search(page.locator("#monitor-progress").inner_text())
    return int(match.group(1)) if match else 0


def wait_for_step(page: Any, at_least: int, timeout_ms: float) -> None:
    page.wait_for_function(
        """(n) => {
            const el = document.querySelector('#monitor-progress');
            const m = el && el.innerText.match(/step (\\d+)/);
            return m && Number(m[1]) >= n;
        }""",
        arg=at_least,
        timeout=timeout_ms,
        polling=10,
    )


def refresh_latency_ms(
    page: Any, store: RunStore, run_id: int, n: int = 5, timeout_s: float = 60.0
) -> list[float]:
    """``n`` times: wait for the page's next timer update (so the 3 s timer is unlikely to beat the
    click), wait until the run DB holds a step later than the page shows, click Refresh and time
    until the page shows that step or a later one. Milliseconds, in order."""
    latencies = []
    for _ in range(n):
        wait_for_step(page, shown_step(page) + 1, timeout_s * 1000)
        target = wait_until(
            lambda: (step := last_logged_step(store, run_id)) > shown_step(page) and step,
            timeout_s,
            "a step later than the page shows",
        )
        start = time.perf_counter()
        page.locator("#monitor-refresh").click()
        wait_for_step(page, int(target), timeout_s * 1000)
        latencies.append(1000 * (time.perf_counter() - start))
    return latencies
