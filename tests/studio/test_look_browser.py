"""What a person sees, in a real Chromium (issue 23, items 14 and 19):

- a pre-flight warning and a run's error keep their tags ("before </answer>, so", not "before , so");
- the Monitor's trainer log opens at its newest line;
- the page uses the system's fonts and downloads none (with Gradio's Source Sans Pro, bold capitals
  were drawn as small caps offline);
- the Runs table's column titles stay on one line ("duration", not "durati" / "on");
- the model dropdown's text stops before its caret.

Screenshots of each go to /tmp/e2e_shots/look-*.png for people to look at. No training here: the
run is written straight into the run DB, with a long log file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM_ARGS,
    StudioProcess,
    fill_field,
    open_accordion,
    open_tab,
    pick_option,
    running_studio,
)
from test_browser_e2e import SHOTS_FOR_LEAD

from studio.context import StudioContext
from studio.supervisor import LOG_FILE
from studio.tabs.monitor import LOG_LINES
from trainer.rundb import Owner

pytestmark = [pytest.mark.browser, pytest.mark.slow]

UI_TIMEOUT_MS = 30_000
CHECK_TIMEOUT_MS = 120_000  # Check config loads the tiny model and samples in the studio process
LOG_LINE_COUNT = 150
RUN_NAME = "long-log"
LONG_ERROR = (
    "dataset_use is think mode (answers as <think>…</think> <answer>…</answer>) but the model wrote "
    "<think> in 0 of 16 completions: the format reward stays low; pick a no_think dataset. "
) * 2


def seed(workspace: Path) -> None:
    """A finished run whose trainer log is longer than the Monitor's tail, and failed runs whose
    long errors leave the Runs table's other columns narrow."""
    ctx = StudioContext(workspace)
    try:
        out = workspace / "outputs" / RUN_NAME
        out.mkdir(parents=True)
        lines = [
            f"2026-12-05 10:00:00 INFO trainer.run.loop: log line {i:03d}"
            for i in range(1, LOG_LINE_COUNT + 1)
        ]
        (out / LOG_FILE).write_text("\n".join(lines) + "\n")
        for name, status, error in (("failed-a", "failed", LONG_ERROR), ("failed-b", "failed", LONG_ERROR),
                                    (RUN_NAME, "finished", None)):  # fmt: skip
            run = ctx.store.create_run(name, output_dir=str(out))
            ctx.store.claim_run(run.id)
            ctx.store.end_run(run.id, Owner.current(), status, error=error)
    finally:
        ctx.store.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    root = tmp_path_factory.mktemp("look")
    seed(root / "workspace")
    with running_studio(root / "workspace", root / "studio.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def fetched() -> list[str]:
    """Every URL the page asked for."""
    return []


@pytest.fixture(scope="module")
def page(chromium: Path, studio: StudioProcess, fetched: list[str]) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            # 1100 px: the width at which the Runs table wrapped its titles
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(studio.url)
            yield page
        finally:
            browser.close()


def shot(page: Any, name: str, selector: str | None = None) -> None:
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    path = str(SHOTS_FOR_LEAD / f"look-{name}.png")
    if selector is None:
        page.screenshot(path=path, full_page=True)
    else:
        page.locator(selector).first.screenshot(path=path)


def test_a_preflight_warning_keeps_its_tags(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Train")
    open_accordion(page, "train-section-grpo")
    fill_field(page, "train-generation_max_length", 3)  # every completion is cut before </answer>
    status = page.locator("#train-status")
    page.locator("#train-check").click()
    expect(status).to_contain_text(re.compile("Config is valid|Config error"), timeout=CHECK_TIMEOUT_MS)
    expect(status).to_contain_text("cut at generation_max_length (3 tokens) before </answer>, so")
    shot(page, "preflight-warning", "#train-status")


def test_a_run_error_keeps_its_tags_in_the_monitor(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Monitor")
    pick_option(page, "monitor-run", re.compile("failed-a"))
    status = page.locator("#monitor-status")
    expect(status).to_contain_text("(answers as <think>…</think> <answer>…</answer>) but the model wrote")


def test_the_monitor_log_opens_at_its_newest_line(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Monitor")
    pick_option(page, "monitor-run", re.compile(RUN_NAME))
    open_accordion(page, "monitor-log-section")
    box = page.locator("#monitor-log textarea").first
    expect(box).to_have_value(re.compile(f"log line {LOG_LINE_COUNT:03d}\\s*$"))
    oldest = LOG_LINE_COUNT - LOG_LINES + 1
    assert f"log line {oldest:03d}" in box.input_value()  # the tail holds LOG_LINES lines ...
    # ... more than the box shows: it is scrolled to its end, the newest line in view.
    page.wait_for_function(
        """(el) => el.scrollHeight > el.clientHeight + 10
               && el.scrollTop + el.clientHeight >= el.scrollHeight - 2""",
        arg=box.element_handle(),
    )
    shot(page, "monitor-log", "#monitor-log-section")


def test_the_page_uses_system_fonts_and_downloads_none(page: Any, fetched: list[str]) -> None:
    open_tab(page, "Monitor")
    pick_option(page, "monitor-run", re.compile("failed-a"))  # its status has a bold "Error:"
    page.locator("#monitor-status strong").first.wait_for()
    families = page.evaluate(
        """() => ['.gradio-container', '#monitor-status strong', '#studio-header h1'].map(
               s => getComputedStyle(document.querySelector(s)).fontFamily)"""
    )
    assert all(f.startswith("system-ui") for f in families), families
    assert [u for u in fetched if re.search(r"\.(woff2?|ttf|otf)(\?|$)", u) or "fonts.g" in u] == []
    shot(page, "bold-text", "#monitor-status")


def test_the_runs_table_titles_stay_on_one_line(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Runs")
    expect(page.locator("#runs-table")).to_contain_text(RUN_NAME)
    lines = page.evaluate(
        """() => Array.from(document.querySelectorAll('#runs-table th')).map(th => {
               const range = document.createRange();
               range.selectNodeContents(th.querySelector('span.header') || th);  // not the menu button
               const tops = new Set(Array.from(range.getClientRects())
                   .filter(r => r.width > 0).map(r => Math.round(r.top)));
               return [th.innerText.trim(), tops.size];
           }).filter(([name]) => name)"""
    )
    assert "duration" in dict(lines) and all(n == 1 for _, n in lines), lines
    shot(page, "runs-table", "#runs-table")


def test_the_model_dropdown_text_stops_before_its_caret(page: Any) -> None:
    open_tab(page, "Train")
    widget = page.locator("#train-model_name_or_path")
    widget.locator("input").fill("/home/someone/models/Qwen2.5-VL-7B-Instruct-trained-on-a-long-dataset-name")
    text_right, caret_left = page.evaluate(
        """(el) => {
               const input = el.querySelector('input');
               const caret = el.querySelector('.icon-wrap');
               const style = getComputedStyle(input);
               const textRight = input.getBoundingClientRect().right - parseFloat(style.paddingRight);
               return [textRight, caret.getBoundingClientRect().left];
           }""",
        widget.element_handle(),
    )
    assert text_right <= caret_left, (text_right, caret_left)
    shot(page, "model-dropdown", "#train-model_name_or_path")


def test_the_yaml_box_shows_the_form_as_it_is_when_opened(page: Any) -> None:
    """The reported bug: the box kept the preset it was built with, and "Load YAML into the form"
    then silently undid every change made since."""
    from playwright.sync_api import expect

    open_tab(page, "Train")
    fill_field(page, "train-max_steps", 321)
    open_accordion(page, "train-section-yaml")
    expect(page.locator("#train-yaml")).to_contain_text("max_steps: 321")
    expect(page.locator("#train-command")).to_contain_text("--max_steps 321")
    page.locator("#train-load-yaml").click()
    expect(page.locator("#train-status")).to_contain_text("No value in the form changed.")
    shot(page, "yaml-box", "#train-section-yaml")
