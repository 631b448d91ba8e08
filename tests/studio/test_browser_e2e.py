"""The whole studio in a real browser, on the embedded tiny model: upload and validate a dataset,
register it, train on it, watch the run live, reload, abort a second run, chat with two
checkpoints, compare the runs, evaluate a checkpoint, and keep a full-page screenshot of every tab
(in the pytest tmp folder and in /tmp/e2e_shots/ for people to look at).

The studio runs as ``python -m trainer.cli studio`` in a temp workspace and trains through its own
supervisor, exactly as a user's would. Every wait is a Playwright ``expect``/``wait_for_function``
with a deadline. Under CI=true a missing /usr/bin/chromium fails the test instead of skipping it.
"""

from __future__ import annotations

import re
import shutil
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
    stop_active_runs,
    wait_for_any_text,
    wait_for_plot,
    write_upload,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS_FOR_LEAD = Path("/tmp/e2e_shots")
TABS = ("Datasets", "Train", "Monitor", "Runs", "Chat", "Evaluate")
DATASET = "e2e_motion"
SHORT_RUN, LONG_RUN = "e2e-short", "e2e-long"
SHORT_STEPS, SAVE_STEPS, SAMPLE_SIZE = 8, 4, 4
# The tiny model takes a fraction of a second per step; these cover trainer start-up (torch and
# transformers imports) on 2 busy cores.
RUN_TIMEOUT_MS = 120_000
UI_TIMEOUT_MS = 30_000
# Every knob of the short run, set through the form (the rest stay at the tiny-CPU preset).
SHORT_FORM = {
    "dataset_use": DATASET,
    "eval_dataset_use": "",
    "max_steps": SHORT_STEPS,
    "per_device_train_batch_size": 2,
    "grpo_sample_size": SAMPLE_SIZE,
    "grpo_logging_steps": 2,
    "save_steps": SAVE_STEPS,
    "eval_steps": 0,
    "num_threads": 1,
    "run_name": SHORT_RUN,
}
# Uncaught exceptions in the page's own scripts (a broken widget shows up here first).
PAGE_ERRORS: list[str] = []
# Long enough that it is still training when the test aborts it.
# (The page is reloaded in between, which resets the form to the preset: set everything again.)
LONG_FORM = {**SHORT_FORM, "max_steps": 5000, "run_name": LONG_RUN}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    root = tmp_path_factory.mktemp("e2e")
    workspace = root / "workspace"
    with running_studio(workspace, root / "studio.log") as proc:
        try:
            yield proc
        finally:
            stop_active_runs(workspace)


@pytest.fixture(scope="module")
def page(chromium: Path, studio: StudioProcess) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    # Widgets update over a websocket from a server that shares 2 cores with trainers.
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("pageerror", lambda exc: PAGE_ERRORS.append(str(exc)))
            page.goto(studio.url)
            yield page
        finally:
            browser.close()


def screenshot(page: Any, tab: str, folder: Path) -> Path:
    """Full-page PNG of ``tab`` (opened first) after checking no error toast is showing."""
    from playwright.sync_api import expect

    open_tab(page, tab)
    expect(page.locator(".toast-body.error")).to_have_count(0)
    path = folder / f"{tab.lower()}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SHOTS_FOR_LEAD / path.name)
    return path


def set_form(page: Any, values: dict[str, object]) -> None:
    for section in ("data", "grpo", "optim", "run"):
        open_accordion(page, f"train-section-{section}")
    for name, value in values.items():
        fill_field(page, f"train-{name}", value)


def upload_and_register(page: Any, files: list[Path]) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Datasets")
    page.locator("#datasets-upload input[type=file]").set_input_files([str(f) for f in files])
    fill_field(page, "datasets-name", DATASET)
    page.locator("#datasets-validate").click()
    expect(page.locator("#datasets-report")).to_contain_text("6 records: 5 usable, 1 with errors")
    # The bad record is named by its line and its id, with what is wrong.
    bad_row = page.locator("#datasets-errors tbody tr").filter(has_text="up_3")
    expect(bad_row).to_have_count(1)
    expect(bad_row).to_contain_text("line 4")
    expect(bad_row).to_contain_text('answer "E" not in A-D')
    page.locator("#datasets-register").click()
    expect(page.locator("#datasets-status")).to_contain_text(DATASET)
    expect(page.locator("#datasets-registry tbody tr").filter(has_text=DATASET)).to_have_count(1)


def launch_run(page: Any, values: dict[str, object]) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Train")
    set_form(page, values)
    page.locator("#train-launch").click()
    expect(page.locator("#train-status")).to_contain_text(str(values["run_name"]), timeout=UI_TIMEOUT_MS)


def wait_for_live_monitor(page: Any) -> None:
    """Plots with points in each GRPO subplot, and a rollout group of SAMPLE_SIZE completions."""
    from playwright.sync_api import expect

    open_tab(page, "Monitor")
    status = page.locator("#monitor-status")
    expect(status).to_contain_text(SHORT_RUN, timeout=UI_TIMEOUT_MS)
    wait_for_any_text(page, {"#monitor-status": r"\b(finished|failed|aborted)\b"}, RUN_TIMEOUT_MS)
    expect(status).to_contain_text(re.compile(rf"{SHORT_RUN}\s+finished"), timeout=1)
    # One point per step in each of the six GRPO subplots.
    wait_for_plot(page, "monitor-plot-grpo", min_traces=6, min_points=2)
    cards = page.locator("#monitor-rollout-completions .vgrpo-completion")
    expect(cards).to_have_count(SAMPLE_SIZE)
    expect(cards.first).to_contain_text("advantage")
    expect(page.locator("#monitor-progress")).to_contain_text(f"step {SHORT_STEPS} / {SHORT_STEPS}")
    # The run picker's label follows the run's status too.
    expect(page.locator("#monitor-run input")).to_have_value(f"#1 {SHORT_RUN} (finished)")


def abort_long_run(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Monitor")
    pick_option(page, "monitor-run", re.compile(LONG_RUN))
    status = page.locator("#monitor-status")
    expect(status).to_contain_text(re.compile(rf"{LONG_RUN}\s+running"), timeout=RUN_TIMEOUT_MS)
    # Abort once steps are being taken, so the trainer's own SIGTERM handling (stop at a step
    # boundary, save a checkpoint) is what ends it.
    long_steps = LONG_FORM["max_steps"]
    wait_for_any_text(
        page,
        {
            "#monitor-progress": rf"step [1-9]\d* / {long_steps}",
            "#monitor-status": r"\b(finished|failed|aborted)\b",
        },
        RUN_TIMEOUT_MS,
    )
    expect(status).to_contain_text(re.compile(rf"{LONG_RUN}\s+running"), timeout=1)
    page.locator("#monitor-abort").click()
    expect(page.locator("#monitor-action")).to_contain_text("SIGTERM")
    expect(status).to_contain_text(re.compile(rf"{LONG_RUN}\s+aborted"), timeout=RUN_TIMEOUT_MS)
    expect(status).to_contain_text("stopped by SIGTERM after saving a checkpoint")
    # The user's abort is a status with a reason, never an error.
    expect(status).not_to_contain_text("Error")
    # Resume: a new attempt of the same run; a second Resume while it trains is refused; abort again.
    page.locator("#monitor-resume").click()
    expect(page.locator("#monitor-action")).to_contain_text("Resuming run")
    expect(status).to_contain_text(re.compile(rf"{LONG_RUN}\s+running"), timeout=RUN_TIMEOUT_MS)
    expect(status).to_contain_text("attempt 2")
    page.locator("#monitor-resume").click()
    expect(page.locator("#monitor-action")).to_contain_text(re.compile(r"is running, owned by pid \d+ on "))
    page.locator("#monitor-abort").click()
    expect(page.locator("#monitor-action")).to_contain_text("SIGTERM")
    expect(status).to_contain_text(re.compile(rf"{LONG_RUN}\s+aborted"), timeout=RUN_TIMEOUT_MS)
    expect(status).not_to_contain_text("Error")


def chat_with_checkpoints(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Chat")
    page.locator("#chat-refresh-models").click()
    pick_option(page, "chat-model-a", f"{SHORT_RUN} · step {SAVE_STEPS}")
    pick_option(page, "chat-model-b", f"{SHORT_RUN} · step {SHORT_STEPS}")
    open_accordion(page, "chat-sample")
    pick_option(page, "chat-sample-dataset", re.compile(rf"^\W*{DATASET}$"))
    fill_field(page, "chat-sample-index", 1)
    page.locator("#chat-sample-load").click()
    expect(page.locator("#chat-sample-info")).to_contain_text("up_1")
    expect(page.locator("#chat-question textarea")).to_have_value(
        re.compile("Which way does the square move")
    )
    page.locator("#chat-ask").click()
    expect(page.locator("#chat-status")).to_contain_text(
        re.compile(r"A: done in [\d.]+ s · B: done in [\d.]+ s"), timeout=RUN_TIMEOUT_MS
    )
    for pane in ("chat-answer-a", "chat-answer-b"):
        answer = page.locator(f"#{pane} [data-testid='bot']").last
        expect(answer).to_contain_text(re.compile(r"\S"))


def compare_runs(page: Any) -> None:
    """Both runs listed with how they ended; overlaid metrics and the config keys that differ."""
    from playwright.sync_api import expect

    open_tab(page, "Runs")
    page.locator("#runs-refresh").click()
    runs = page.locator("#runs-table").get_by_role("row")
    expect(runs.filter(has_text=SHORT_RUN)).to_contain_text("finished")
    expect(runs.filter(has_text=LONG_RUN)).to_contain_text("aborted")
    pick_option(page, "runs-select", re.compile(SHORT_RUN))
    pick_option(page, "runs-select", re.compile(LONG_RUN))
    page.locator("#runs-compare").click()
    wait_for_plot(page, "runs-overlay")
    expect(page.locator("#runs-diff").get_by_role("row").filter(has_text="max_steps")).to_contain_text(
        str(LONG_FORM["max_steps"])
    )


def evaluate_checkpoint(page: Any) -> None:
    """Evaluate the short run's last checkpoint on the uploaded dataset's 5 usable records."""
    from playwright.sync_api import expect

    open_tab(page, "Evaluate")
    # Selecting the tab re-read the run DB: the run launched after the page loaded is offered too.
    page.locator("#eval-run input").click()
    expect(page.get_by_role("option", name=re.compile(LONG_RUN))).to_have_count(1)
    page.get_by_role("option", name=re.compile(SHORT_RUN)).first.click()
    pick_option(page, "eval-checkpoint", f"{SHORT_RUN} · step {SHORT_STEPS}")
    pick_option(page, "eval-dataset", re.compile(rf"^\W*{DATASET}$"))
    fill_field(page, "eval-batch-size", 5)
    page.locator("#eval-start").click()
    headline = page.locator("#eval-headline")
    expect(headline).to_contain_text(f"step {SHORT_STEPS} · {DATASET}", timeout=RUN_TIMEOUT_MS)
    expect(headline).to_contain_text("5 records")
    expect(page.locator("#eval-status")).to_contain_text("finished")
    expect(page.locator("#eval-records").get_by_role("row").filter(has_text="up_4")).to_have_count(1)


def test_studio_end_to_end(
    page: Any, studio: StudioProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import expect

    shots = tmp_path_factory.mktemp("e2e_shots")
    upload_and_register(page, write_upload(tmp_path_factory.mktemp("upload")))
    screenshot(page, "Datasets", shots)

    launch_run(page, SHORT_FORM)
    screenshot(page, "Train", shots)
    wait_for_live_monitor(page)
    screenshot(page, "Monitor", shots)

    # A reload re-finds the run from the run DB alone.
    page.reload()
    open_tab(page, "Monitor")
    expect(page.locator("#monitor-status")).to_contain_text(
        re.compile(rf"{SHORT_RUN}\s+(running|finished)"), timeout=UI_TIMEOUT_MS
    )
    open_tab(page, "Runs")
    expect(page.locator("#runs-table").get_by_role("row").filter(has_text=SHORT_RUN)).to_have_count(1)

    launch_run(page, LONG_FORM)
    abort_long_run(page)
    chat_with_checkpoints(page)
    screenshot(page, "Chat", shots)

    compare_runs(page)
    screenshot(page, "Runs", shots)
    evaluate_checkpoint(page)
    screenshot(page, "Evaluate", shots)
    assert sorted(p.name for p in shots.iterdir()) == sorted(f"{t.lower()}.png" for t in TABS)
    assert PAGE_ERRORS == []
