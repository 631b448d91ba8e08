"""Lists are live, in a real Chromium: what is added or removed behind the page's back (a dataset
registered from the command line, a run and its checkpoints written by a trainer, a checkpoint
deleted by save_total_limit) shows up when its tab is selected and after a reload, without
restarting the studio; and a run's export downloads from the Runs tab. No training here: the rows
are written straight into the registry and run DB.
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
    open_tab,
    pick_option,
    running_studio,
    write_upload,
)
from studio_helpers import wait_for

from studio.context import StudioContext
from trainer.cli import main as vgrpo
from trainer.data import register_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS_FOR_LEAD = Path("/tmp/e2e_shots")
UI_TIMEOUT_MS = 30_000
LATE = "late_cli_ds"


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    root = tmp_path_factory.mktemp("live")
    with running_studio(root / "workspace", root / "studio.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def page(chromium: Path, studio: StudioProcess) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(studio.url)
            yield page
        finally:
            browser.close()


def options_of(page: Any, elem_id: str, open_timeout_ms: float = 3000) -> list[str]:
    """The option texts of dropdown ``#elem_id`` (opened, read, closed again); [] when its list did
    not open (a refresh replacing the widget at that moment), so a poll simply tries again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f"#{elem_id} input").first
    box.click()  # Gradio opens the list on focus ...
    options = page.get_by_role("option")
    try:
        options.first.wait_for(timeout=open_timeout_ms)
        texts = [t.strip().splitlines()[-1] for t in options.all_inner_texts()]  # drop the picked one's ✓
    except PlaywrightTimeout:
        texts = []
    page.keyboard.press("Escape")
    box.blur()  # ... so leave it, or the next click would not open it again
    return texts


def options_once(page: Any, elem_id: str, wanted: str) -> list[str]:
    """The dropdown's options once ``wanted`` is among them (the tab's refresh may be on its way)."""

    seen: list[list[str]] = []

    def ready() -> list[str] | None:
        seen.append(options_of(page, elem_id))
        return seen[-1] if wanted in seen[-1] else None

    try:
        return wait_for(ready, UI_TIMEOUT_MS / 1000, f"{wanted!r} among the options of #{elem_id}")
    except AssertionError as exc:
        shot(page, f"stale-{elem_id}")
        raise AssertionError(f"{exc}; last seen: {seen[-1:]}") from None


def shot(page: Any, name: str) -> None:
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS_FOR_LEAD / f"live-{name}.png"), full_page=True)


def download_export(page: Any, run_id: int, studio: StudioProcess, tmp_path: Path) -> None:
    """Export the run's metrics as JSON lines from the Runs tab: the download equals the CLI's file."""
    from playwright.sync_api import expect

    pick_option(page, "runs-select", re.compile("late-run"))
    page.locator("#runs-export-format").get_by_text("jsonl", exact=True).click()
    page.locator("#runs-export").click()
    link = page.locator(f'#runs-export-files a[download="run-{run_id}-late-run-metrics.jsonl"]')
    expect(link).to_have_count(1)
    with page.expect_download() as info:
        link.click()
    downloaded = tmp_path / "downloaded.jsonl"
    info.value.save_as(downloaded)
    by_cli = tmp_path / "cli.jsonl"
    argv = ["runs", "export", str(run_id), "--format", "jsonl", "-o", str(by_cli)]
    assert vgrpo([*argv, "--db", StudioContext(studio.workspace).db_url]) == 0
    assert downloaded.read_text().count("\n") == 4
    assert downloaded.read_bytes() == by_cli.read_bytes()


def test_lists_follow_the_registry_and_the_run_db(page: Any, studio: StudioProcess, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    registry = page.locator("#datasets-registry")
    expect(registry).to_contain_text("synthetic_motion_eval")  # filled on page load
    expect(registry).not_to_contain_text(LATE)

    # Registered from outside the page (as `vgrpo data register` does) after it loaded.
    files = write_upload(tmp_path / "upload")
    register_dataset(LATE, files[0], studio.workspace)
    open_tab(page, "Train")
    options_once(page, "train-dataset-pick", LATE)
    open_tab(page, "Datasets")
    expect(registry.get_by_role("row").filter(has_text=LATE)).to_have_count(1)
    page.reload()
    expect(registry.get_by_role("row").filter(has_text=LATE)).to_have_count(1)
    shot(page, "datasets")

    # A run written by a trainer after the page loaded, with three checkpoints of which
    # save_total_limit already removed the oldest folder.
    ctx = StudioContext(studio.workspace)
    try:
        run = ctx.store.create_run("late-run", config={"model": {"model_name_or_path": "/models/base"}})
        owner = ctx.store.claim_run(run.id).owner  # this test process stands in for the trainer
        ctx.store.log_metrics(run.id, 1, {"reward/total": 0.5, "grpo/kl_div": 0.0}, wall_time=1.0)
        ctx.store.log_metrics(run.id, 2, {"reward/total": 0.75, "grpo/kl_div": 0.01}, wall_time=2.0)
        ctx.store.end_run(run.id, owner, "finished")
        out = ctx.runs_dir / "late-run"
        for step in (2, 4, 6):
            (out / f"checkpoint-{step}").mkdir(parents=True)
            ctx.store.add_checkpoint(run.id, step, str(out / f"checkpoint-{step}"), {})
        shutil.rmtree(out / "checkpoint-2")
    finally:
        ctx.store.close()

    open_tab(page, "Runs")
    expect(page.locator("#runs-table").get_by_role("row").filter(has_text="late-run")).to_contain_text(
        "finished"
    )
    download_export(page, run.id, studio, tmp_path)
    shot(page, "runs")
    open_tab(page, "Monitor")
    expect(page.locator("#monitor-run input")).to_have_value(f"#{run.id} late-run (finished)")
    open_tab(page, "Chat")
    models = options_once(page, "chat-model-a", "late-run · step 6")
    assert "late-run · step 6" in models and "late-run · step 4" in models
    assert not any("step 2" in m for m in models), models
    open_tab(page, "Evaluate")
    expect(page.locator("#eval-run input")).to_have_value(re.compile("late-run"))
    checkpoints = options_once(page, "eval-checkpoint", "late-run · step 6")
    assert checkpoints[:2] == ["late-run · step 6", "late-run · step 4"], checkpoints
    assert not any("step 2" in c for c in checkpoints), checkpoints
    expect(page.locator("#eval-checkpoint input")).to_have_value("late-run · step 6")
    shot(page, "evaluate")


def test_upload_errors_are_one_readable_line_with_details_folded(page: Any, tmp_path: Path) -> None:
    """A zip that is not one, then an annotation sent without two of its videos: the page names the
    file and the fix, never the upload's staging folder; the traceback is folded away."""
    from playwright.sync_api import expect

    page.reload()
    open_tab(page, "Datasets")
    bad_zip = tmp_path / "motion.zip"
    bad_zip.write_text("this is not a zip archive")
    page.locator("#datasets-upload input[type=file]").set_input_files([str(bad_zip)])
    page.locator("#datasets-validate").click()
    status = page.locator("#datasets-status")
    expect(status).to_contain_text("Upload refused: motion.zip: not a valid zip file")
    details = status.locator("details")
    expect(details).to_have_count(1)
    expect(details.locator("pre")).not_to_be_visible()  # folded until the summary is clicked
    shot(page, "upload-refused")
    details.locator("summary").click()
    expect(details.locator("pre")).to_contain_text("BadZipFile")

    page.reload()
    open_tab(page, "Datasets")
    files = write_upload(tmp_path / "partial")
    page.locator("#datasets-upload input[type=file]").set_input_files([str(f) for f in files[:2]])
    page.locator("#datasets-validate").click()
    errors = page.locator("#datasets-errors")
    expect(errors.get_by_role("row").filter(has_text="up_1")).to_contain_text(
        re.compile(r"video not found: up_m_\d+\.mp4")
    )
    expect(errors).not_to_contain_text(".staging")
    expect(page.locator("#datasets-preview-record")).to_contain_text("e2e_motion.jsonl line 1")
    expect(page.locator("#datasets-preview-record")).not_to_contain_text(".staging")
    shot(page, "upload-missing-videos")
