"""What the studio's Monitor costs: the server under N polling viewers, and one real browser page.

A temporary workspace, a real ``vgrpo studio`` subprocess on a free port of 127.0.0.1, and ONE live
training run of the embedded tiny model (started through ``studio.supervisor.Supervisor`` as the
Train tab does, so the Monitor knows its planned steps). Once the run has trained --warmup-s
seconds (in the trials its first minute's steps were ~50 % slower than the later ones, the studio
idle: a baseline taken then made every later window look faster), two parts, each printing one
line a script can read:

    studio-load: viewers=10 p95_update_ms=180 p50_update_ms=95 studio_cpu=0.23 trainer_step_s=0.41
        trainer_step_slowdown=+3.1% calls=130 errors=0 viewers_cpu=0.31   (one line per --viewers entry)
    studio-page: seconds=120 busy=0.083 heap_growth_mb=12.4 refresh_median_ms=640 refresh_p95_ms=900
        trainer_step_slowdown=+4.0% studio_cpu=0.11 trainer_step_s=0.42

``studio-load``: for each N in --viewers, a window of --window-s seconds in which N headless viewers
(threads) poll the Monitor as an open page does: each holds what a page holds (the run's attempt,
its last step, the metrics) and asks the live component's server function (``poll``, a plain POST
to gradio's ``component_server`` route) for the rest every REFRESH_S seconds (studio/tabs/
monitor.py); its first ask gets the whole history, as a page that just opened does.
The viewers start spread over the first poll period. ``p50/p95_update_ms``: the asks' response times;
``studio_cpu``: the studio process's CPU seconds over the window's wall seconds (1.0 = one core);
``trainer_step_s``: median ``time/step_s`` of the steps the trainer logged in the window (read from
the run DB); ``trainer_step_slowdown`` = trainer_step_s(N) / trainer_step_s(0) - 1 (the N=0 window
is the baseline; "nan" without one); ``viewers_cpu``: this script's own CPU over the window (the
viewers decoding the updates), which the trainer's cores pay here and a remote browser would not.

``studio-page``: the system Chromium (headless, never a downloaded one) opens the studio, goes to
the Monitor, picks the run and settles 20 s; then over --page-seconds Chrome's own Performance
metrics (CDP): ``busy`` = main-thread task seconds (``TaskDuration``) / wall seconds, and
``heap_growth_mb`` = ``JSHeapUsedSize`` at the end - at the start, each read after a forced GC (so
growth is retained memory); the trainer's step time with the page open against the N=0 window.
Then the Refresh latency, --refresh-samples times: wait for the page's next timer update, wait for
the run DB to hold a later step than the page shows, click Refresh and time until the page shows
that step or a later one (median and p95).

The machine is shared by the studio, the trainer, the viewers and the browser; on 2 cores expect
noisy numbers (run it twice before believing a few per cent).

    .venv/bin/python bench/studio_load.py                                   # ~10 minutes
    .venv/bin/python bench/studio_load.py --viewers 0,1,4 --window-s 20 --page-seconds 30
    .venv/bin/python bench/studio_load.py --page-seconds 0 --json bench/out/studio_load.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio_load_page import (  # bench/ is the script's folder, so its siblings import
    PageCost,
    median_or_nan,
    page_cost,
    refresh_latency_ms,
    step_times_between,
    wait_for_step,
    wait_until,
)
from studio_load_setup import LiveRun, Studio, live_run, require_running, running_studio

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# As CHROMIUM_ARGS in tests/studio/browser_helpers.py: headless, talking to nobody.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LIVE_ELEM_ID = "monitor-live"  # the Monitor's live component (progress and charts), which polls


# ---- numbers ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between ranks (numpy's default);
    nan for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([10.0, 20.0], 95)
    19.5
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def slowdown(step_s: float, baseline_s: float) -> float:
    """``step_s / baseline_s - 1`` (0.031 = 3.1 % slower); nan without a baseline."""
    if not baseline_s or math.isnan(baseline_s) or math.isnan(step_s):
        return math.nan
    return step_s / baseline_s - 1.0


def format_percent(fraction: float) -> str:
    return "nan" if math.isnan(fraction) else f"{100 * fraction:+.1f}%"


def _ms(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.0f}"


# ---- part 1: headless viewers ----------------------------------------------------------------
@dataclass
class ViewerWindow:
    """One window of N polling viewers."""

    viewers: int
    seconds: float
    update_ms: list[float] = field(default_factory=list)  # every tick's response time
    errors: list[str] = field(default_factory=list)  # failed ticks, as "ExcType: message"
    studio_cpu: float = math.nan  # studio CPU seconds / wall seconds (1.0 = one core)
    # This script's own CPU (the viewers decoding the updates): taken from the trainer's cores too.
    viewers_cpu: float = math.nan
    step_times_s: list[float] = field(default_factory=list)  # the trainer's steps in the window

    @property
    def trainer_step_s(self) -> float:
        return median_or_nan(self.step_times_s)

    def line(self, baseline_step_s: float) -> str:
        return (
            f"studio-load: viewers={self.viewers} p95_update_ms={_ms(percentile(self.update_ms, 95))} "
            f"p50_update_ms={_ms(percentile(self.update_ms, 50))} studio_cpu={self.studio_cpu:.2f} "
            f"trainer_step_s={self.trainer_step_s:.3f} "
            f"trainer_step_slowdown={format_percent(slowdown(self.trainer_step_s, baseline_step_s))} "
            f"calls={len(self.update_ms)} errors={len(self.errors)} viewers_cpu={self.viewers_cpu:.2f}"
        )


@dataclass(frozen=True)
class MonitorPoll:
    """Where an open Monitor page sends its polls: the live component's server function (a plain
    POST to gradio's ``component_server`` route, not a queued event; see studio/tabs/monitor.py)."""

    url: str  # the studio's root URL
    component_id: int  # the ``#monitor-live`` component's id in the app's config

    @classmethod
    def of(cls, url: str) -> MonitorPoll:
        with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30) as response:
            config = json.load(response)
        for component in config["components"]:
            if component.get("props", {}).get("elem_id") == LIVE_ELEM_ID:
                if "poll" not in component.get("props", {}).get("server_fns", []):
                    raise RuntimeError(f"#{LIVE_ELEM_ID} has no server function 'poll'")
                return cls(url, int(component["id"]))
        raise RuntimeError(f"the studio has no #{LIVE_ELEM_ID} component (studio/tabs/monitor.py)")

    def ask(self, session_hash: str, request: dict[str, Any]) -> dict[str, Any]:
        body = {
            "data": request,
            "component_id": self.component_id,
            "fn_name": "poll",
            "session_hash": session_hash,
        }
        req = urllib.request.Request(
            self.url.rstrip("/") + "/gradio_api/component_server/",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.load(response)


@dataclass
class HeadlessViewer:
    """One open Monitor page without a browser: it holds what the page holds (the attempt, the last
    step, the metric names) and asks for the rest, as studio/static/monitor_charts.js does."""

    run_id: int
    session_hash: str
    attempt: int | None = None
    last_step: int | None = None
    metrics: set[str] = field(default_factory=set)

    def poll(self, api: MonitorPoll) -> dict[str, Any]:
        answer = api.ask(
            self.session_hash,
            {"run_id": self.run_id, "attempt": self.attempt, "last_step": self.last_step,
             "metrics": sorted(self.metrics), "log_open": False},
        )  # fmt: skip
        if "error" in answer:
            raise RuntimeError(answer["error"])
        if answer["attempt"] != self.attempt:
            self.attempt, self.last_step, self.metrics = answer["attempt"], None, set()
        for name, points in ((answer.get("delta") or {}).get("points") or {}).items():
            self.metrics.add(name)
            if points["steps"]:
                self.last_step = max(self.last_step or 0, points["steps"][-1])
        return answer


def poll_monitor(api: MonitorPoll, viewer: HeadlessViewer, stop: threading.Event, delay_s: float,
                 period_s: float, out: ViewerWindow) -> None:  # fmt: skip
    """Poll like an open Monitor page until ``stop``: one ask every ``period_s`` seconds, starting
    after ``delay_s``; each response time (ms) appended to ``out.update_ms``."""
    next_at = time.monotonic() + delay_s
    while not stop.wait(max(0.0, next_at - time.monotonic())):
        start = time.perf_counter()
        try:
            viewer.poll(api)
            out.update_ms.append(1000 * (time.perf_counter() - start))  # list.append: thread-safe
        except Exception as exc:  # counted, not fatal: the window's other numbers stand
            out.errors.append(f"{type(exc).__name__}: {exc}")
        next_at += period_s
        while next_at < time.monotonic():  # the page asks again only once its last ask answered
            next_at += period_s


def viewer_window(studio: Studio, run: LiveRun, viewers: int, seconds: float) -> ViewerWindow:
    """``viewers`` sessions polling the Monitor for ``seconds``; the studio's CPU and the trainer's
    step times over the same wall-clock window."""
    import psutil

    from studio.tabs.monitor import REFRESH_S  # the page's poll period

    require_running(run)
    api = MonitorPoll.of(studio.url)
    viewers_ = [HeadlessViewer(run.run_id, f"load-{i}-{os.getpid()}") for i in range(viewers)]
    window = ViewerWindow(viewers, seconds)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=poll_monitor,
            args=(api, viewer, stop, REFRESH_S * i / max(viewers, 1), REFRESH_S, window),
            daemon=True,
        )
        for i, viewer in enumerate(viewers_)
    ]
    proc, me = psutil.Process(studio.process.pid), psutil.Process()
    cpu0, mine0 = sum(proc.cpu_times()[:2]), sum(me.cpu_times()[:2])
    wall0, start = time.perf_counter(), time.time()
    try:
        for thread in threads:
            thread.start()
        stop.wait(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        cpu1, mine1 = sum(proc.cpu_times()[:2]), sum(me.cpu_times()[:2])
        wall1, end = time.perf_counter(), time.time()
    window.studio_cpu = (cpu1 - cpu0) / (wall1 - wall0)
    window.viewers_cpu = (mine1 - mine0) / (wall1 - wall0)
    window.step_times_s = step_times_between(run.store, run.run_id, start, end)
    return window


@dataclass
class PageResult:
    cost: PageCost
    refresh_ms: list[float]

    def line(self, baseline_step_s: float) -> str:
        c = self.cost
        return (
            f"studio-page: seconds={c.seconds:.0f} busy={c.busy:.3f} heap_growth_mb={c.heap_growth_mb:.1f} "
            f"refresh_median_ms={_ms(median_or_nan(self.refresh_ms))} "
            f"refresh_p95_ms={_ms(percentile(self.refresh_ms, 95))} "
            f"trainer_step_slowdown={format_percent(slowdown(c.trainer_step_s, baseline_step_s))} "
            f"studio_cpu={c.studio_cpu:.2f} trainer_step_s={c.trainer_step_s:.3f}"
        )


def open_monitor(page: Any, url: str, run_id: int, timeout_ms: float = 60_000) -> None:
    """Load the studio, open the Monitor tab, pick the run and wait until its progress shows a step."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Monitor", exact=True).click(timeout=timeout_ms)
    page.locator("#monitor-run input").first.click()
    page.get_by_role("option", name=re.compile(rf"^#{run_id} ")).first.click()
    wait_for_step(page, 1, timeout_ms)


def measure_page(
    studio: Studio, run: LiveRun, seconds: float, settle_s: float, refresh_samples: int
) -> PageResult:
    """One Chromium page on the Monitor: settle, then its cost over ``seconds``, then Refresh latency."""
    import psutil
    from playwright.sync_api import sync_playwright

    require_running(run)
    proc = psutil.Process(studio.process.pid)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_monitor(page, studio.url, run.run_id)
            page.wait_for_timeout(settle_s * 1000)
            cpu0 = sum(proc.cpu_times()[:2])
            cost = page_cost(page, seconds)
            cost.studio_cpu = (sum(proc.cpu_times()[:2]) - cpu0) / cost.seconds
            cost.step_times_s = step_times_between(run.store, run.run_id, cost.start, cost.end)
            refresh = (
                refresh_latency_ms(page, run.store, run.run_id, refresh_samples) if refresh_samples else []
            )
        finally:
            browser.close()
    return PageResult(cost, refresh)


# ---- the script ------------------------------------------------------------------------------
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--viewers",
        default="0,1,10,30",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        help="viewer counts, one window each (0: the baseline for the slowdowns)",
    )
    parser.add_argument("--window-s", type=float, default=40.0, help="seconds of each viewers window")
    parser.add_argument(
        "--page-seconds", type=float, default=120.0, help="seconds the page is measured (0: no page)"
    )
    parser.add_argument(
        "--settle-s", type=float, default=20.0, help="seconds the page runs before it is measured"
    )
    parser.add_argument("--refresh-samples", type=int, default=5, help="Refresh clicks timed (0: none)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=75.0,
        help="seconds of training (from its first step) before the first window",
    )
    parser.add_argument("--batch", type=int, default=8, help="prompts per training step (tiny_cpu.yaml: 16)")
    parser.add_argument(
        "--workspace", default=None, help="folder for the studio (default: a new temp folder)"
    )
    parser.add_argument("--json", default=None, help="also write every number to this JSON file")
    return parser.parse_args(argv)


def _budget_s(args: argparse.Namespace) -> float:
    """The trainer's max_train_seconds: every part with room to spare, so it outlives the bench."""
    page = args.page_seconds + args.settle_s + 60 * args.refresh_samples if args.page_seconds else 0
    return 600 + args.warmup_s + len(args.viewers) * (args.window_s + 60) + page


def wait_for_warmup(run: LiveRun, seconds: float, timeout_s: float = 600.0) -> None:
    """Until the trainer's first step is ``seconds`` old (model loading and the slower first steps
    stay out of the windows); RuntimeError as soon as the run is no longer training."""
    from trainer.core import metrics_keys as mk

    def first_step_wall() -> float | None:
        require_running(run)
        series = run.store.metrics_since(run.run_id, names=[mk.TIME_STEP_S]).get(mk.TIME_STEP_S)
        return series.wall_times[0] if series and series.wall_times else None

    first = float(wait_until(first_step_wall, timeout_s, "the first training step"))  # type: ignore[arg-type]
    pause = threading.Event()
    while time.time() < first + seconds:
        require_running(run)
        pause.wait(min(5.0, first + seconds - time.time()))


def measure(args: argparse.Namespace, workspace: Path, results: dict[str, Any]) -> None:
    """Both parts, on one studio and one run; prints the lines and fills ``results`` as it goes."""
    with ExitStack() as stack:  # closed in reverse: the run is aborted, then the studio stopped
        studio = stack.enter_context(running_studio(workspace))
        run = stack.enter_context(live_run(workspace, args.batch, _budget_s(args)))
        print(f"studio {studio.url}, run {run.run_id} (pid {run.pid}, log {run.log_path})", flush=True)
        wait_for_warmup(run, args.warmup_s)
        baseline = math.nan
        for viewers in args.viewers:
            window = viewer_window(studio, run, viewers, args.window_s)
            if viewers == 0:
                baseline = results["baseline_step_s"] = window.trainer_step_s
            print(window.line(baseline), flush=True)
            results["viewers"].append(
                {
                    **asdict(window),
                    "p50_update_ms": percentile(window.update_ms, 50),
                    "p95_update_ms": percentile(window.update_ms, 95),
                    "trainer_step_s": window.trainer_step_s,
                    "trainer_step_slowdown": slowdown(window.trainer_step_s, baseline),
                }
            )
        if args.page_seconds:
            page = measure_page(studio, run, args.page_seconds, args.settle_s, args.refresh_samples)
            print(page.line(baseline), flush=True)
            results["page"] = {
                **asdict(page.cost),
                "heap_growth_mb": page.cost.heap_growth_mb,
                "trainer_step_s": page.cost.trainer_step_s,
                "trainer_step_slowdown": slowdown(page.cost.trainer_step_s, baseline),
                "refresh_ms": page.refresh_ms,
                "refresh_median_ms": median_or_nan(page.refresh_ms),
                "refresh_p95_ms": percentile(page.refresh_ms, 95),
            }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    is_temp = args.workspace is None
    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="vgrpo-studio-load-"))
    workspace.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "args": vars(args),
        "workspace": str(workspace),
        "baseline_step_s": math.nan,
        "viewers": [],
        "page": None,
    }
    try:
        measure(args, workspace, results)
    except BaseException:
        print(f"failed; the studio's and the trainer's logs are in {workspace}", file=sys.stderr)
        raise
    else:
        if is_temp:
            shutil.rmtree(workspace, ignore_errors=True)
    finally:
        if args.json:  # what was measured before a failure too
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
