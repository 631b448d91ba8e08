"""Helpers for the Playwright end-to-end test: the studio as a real subprocess, a Debian Chromium,
and the few Gradio widget moves (tabs, dropdowns, numbers) the test repeats.

Gradio 6 renders a dropdown as an ``<input>`` plus a floating ``<ul>`` of ``role=option`` items,
and a tab as a ``role=tab`` button that does not carry the tab's elem_id, so both are found by
role and visible text rather than by id.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio_helpers import wait_for

from trainer.core.paths import REPO_ROOT, SYNTHETIC_DIR

CHROMIUM = Path("/usr/bin/chromium")
# The only way this suite starts a browser: the system Chromium, headless, talking to nobody.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
MCQ_PROMPT = "<video>\nWhich way does the square move?\nOptions:\n(A) left\n(B) right\n(C) up\n(D) down"


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@dataclass
class StudioProcess:
    """A running ``vgrpo studio``: its URL, workspace and log file."""

    url: str
    workspace: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, max_chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-max_chars:] if self.log_path.exists() else ""


@contextmanager
def running_studio(workspace: Path, log_path: Path, timeout_s: float = 90.0) -> Iterator[StudioProcess]:
    """Start ``python -m trainer.cli studio`` on a free port; yield once HTTP answers; stop it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "trainer.cli", "studio", "--workspace", str(workspace), "--port", str(port)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("VGRPO_DB", None)  # the studio's run DB is <workspace>/runs.db, never one from the caller
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    studio = StudioProcess(url, workspace, log_path, process)
    try:
        wait_for(
            lambda: process.poll() is not None or is_serving(url),
            timeout_s=timeout_s,
            what=f"studio at {url}",
        )
        if process.poll() is not None:
            raise AssertionError(f"studio exited with {process.returncode}:\n{studio.log_tail()}")
        yield studio
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def stop_active_runs(workspace: Path) -> list[int]:
    """Abort every run of the workspace still queued or running (a failed test must not leave trainers)."""
    from studio.context import StudioContext
    from studio.supervisor import Supervisor

    ctx = StudioContext(workspace)
    try:
        active = [r.id for r in ctx.store.list_runs() if r.is_active]
        supervisor = Supervisor(ctx, grace_s=5.0)
        for run_id in active:
            supervisor.abort(run_id, grace_s=5.0)
        return active
    finally:
        ctx.store.close()


def write_upload(folder: Path, n_records: int = 6, bad_index: int = 3) -> list[Path]:
    """A seed-format JSONL of ``n_records`` motion questions plus its videos (copies of the synthetic
    ones); record ``bad_index`` answers "(E) sideways", a letter not among the options A-D.

    Returns the files to upload: the annotation first, then the videos.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((SYNTHETIC_DIR / "videos").glob("*.mp4"))[:3]
    videos = []
    for src in sources:
        dst = folder / f"up_{src.name}"
        dst.write_bytes(src.read_bytes())
        videos.append(dst)
    lines = []
    for i in range(n_records):
        answer = "(E) sideways" if i == bad_index else "(A) left"
        record = {
            "id": f"up_{i}",
            "video": videos[i % len(videos)].name,
            "conversations": [
                {"from": "human", "value": MCQ_PROMPT},
                {"from": "gpt", "value": f"<think>It slides across.</think> <answer>{answer}</answer>"},
            ],
        }
        lines.append(json.dumps(record))
    annotation = folder / "e2e_motion.jsonl"
    annotation.write_text("\n".join(lines) + "\n")
    return [annotation, *videos]


# ---- Gradio widget moves -------------------------------------------------------------------------


def open_tab(page: Any, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()


def pick_option(page: Any, elem_id: str, option: str | re.Pattern) -> None:
    """Open the dropdown ``#elem_id`` and click the option whose text is (or matches) ``option``."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).first.click()


def fill_field(page: Any, elem_id: str, value: object) -> None:
    """Type into a textbox or number widget and leave it, so Gradio takes the value."""
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(str(value))
    box.press("Tab")


def open_accordion(page: Any, elem_id: str) -> None:
    """Open the accordion ``#elem_id`` if it is closed (Gradio renders a closed one's children only
    once it is opened, so its widgets cannot be found before)."""
    accordion = page.locator(f"#{elem_id}")
    if not accordion.locator("[data-testid='accordion-content']").first.is_visible():
        accordion.locator("button.label-wrap").first.click()


def wait_for_plot(
    page: Any, elem_id: str, min_traces: int = 1, min_points: int = 2, min_last_x: float | None = None
) -> None:
    """Wait until the Plotly charts in ``#elem_id`` draw ``min_traces`` curves of ``min_points``
    points or more (read from the figures' data, not from pixels), each reaching x >=
    ``min_last_x`` when given. The Monitor draws a chart only once it is on screen, so the element
    is scrolled into view first, as a person would."""
    page.locator(f"#{elem_id}").first.scroll_into_view_if_needed()
    page.wait_for_function(
        """([id, minTraces, minPoints, minLastX]) => {
            const figures = document.querySelectorAll(`#${id} .js-plotly-plot`);
            const curves = Array.from(figures).flatMap(el => el.data || [])
                .filter(t => !(t.name || '').endsWith('(raw)'));
            return curves.filter(t => t.x && t.x.length >= minPoints
                && (minLastX === null || t.x[t.x.length - 1] >= minLastX)).length >= minTraces;
        }""",
        arg=[elem_id, min_traces, min_points, min_last_x],
    )


def wait_for_any_text(page: Any, patterns: dict[str, str], timeout_ms: float) -> str:
    """Wait until the text of one of the elements (CSS selector -> JS regex) matches; return that
    selector. Lets a wait for success end at once when the page shows a failure instead."""
    handle = page.wait_for_function(
        """(patterns) => {
            for (const [selector, pattern] of Object.entries(patterns)) {
                const el = document.querySelector(selector);
                if (el && new RegExp(pattern).test(el.innerText)) return selector;
            }
            return false;
        }""",
        arg=patterns,
        timeout=timeout_ms,
    )
    return handle.json_value()
