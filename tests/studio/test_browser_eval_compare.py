"""The Evaluate tab's base vs checkpoints in a real browser: launch "Base + all checkpoints" on a
run from the tab, wait for the job, and read the grouped bar chart, the per-task table, the answer
distribution and one failure (question + completion). Keeps a screenshot (tmp folder and
/tmp/e2e_shots/evaluate_compare.png) for people to look at."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM_ARGS, fill_field, open_tab, pick_option, running_studio, wait_for_plot

from trainer.core.paths import TINY_MODEL_DIR
from trainer.rundb import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN = "grpo-compare"
JOB_TIMEOUT_MS = 180_000
UI_TIMEOUT_MS = 30_000


def _workspace(root: Path) -> Path:
    """A workspace whose run trained from the tiny model and saved checkpoint-2 (a copy of it)."""
    workspace = root / "workspace"
    ckpt = workspace / "outputs" / RUN / "checkpoint-2"
    shutil.copytree(TINY_MODEL_DIR, ckpt)
    with RunStore(f"sqlite:///{workspace / 'runs.db'}") as store:
        run = store.create_run(
            RUN, config={"model": {"model_name_or_path": str(TINY_MODEL_DIR)}}, status="finished"
        )
        store.add_checkpoint(run.id, 2, str(ckpt), {})
    return workspace


def test_base_vs_checkpoints_from_launch_to_chart(chromium: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    workspace = _workspace(tmp_path)
    errors: list[str] = []
    with running_studio(workspace, tmp_path / "studio.log") as studio, sync_playwright() as p:
        expect.set_options(timeout=UI_TIMEOUT_MS)
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(studio.url)
            open_tab(page, "Evaluate")
            pick_option(page, "eval-run", re.compile(RUN))
            pick_option(page, "eval-dataset", re.compile(r"^\W*synthetic_motion_eval$"))
            fill_field(page, "eval-max-records", 6)
            page.locator("#eval-compare input").check()
            page.locator("#eval-start").click()
            expect(page.locator("#eval-status")).to_contain_text("finished", timeout=JOB_TIMEOUT_MS)
            # Two models (base, step 2) x (the dataset's task + overall).
            wait_for_plot(page, "eval-task-bars", min_traces=2, min_points=2)
            names = page.evaluate(
                "() => document.querySelector('#eval-task-bars .js-plotly-plot').data.map(t => t.name)"
            )
            assert names == ["base", "step 2"]
            table = page.locator("#eval-task-table")
            expect(table.get_by_role("row").filter(has_text="step 2").first).to_contain_text(
                "synthetic_motion_eval"
            )
            expect(
                table.get_by_role("row").filter(has_text="overall").filter(has_text="step 2")
            ).to_have_count(1)
            wait_for_plot(page, "eval-answer-dist", min_traces=2, min_points=1)
            expect(page.locator("#eval-compare-note")).to_contain_text("2 models")
            shot = tmp_path / "evaluate_compare.png"
            page.locator("#eval-task-bars").scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
            lead = Path("/tmp/e2e_shots")
            lead.mkdir(exist_ok=True)
            shutil.copy(shot, lead / "evaluate_compare.png")
            # The failure browser: pick a wrong answer, see its question and completion.
            page.locator("#eval-fail-record input").click()
            # The warm-started tiny model answers at chance (~1/4 right): six records have failures.
            page.get_by_role("option").first.click()
            detail = page.locator("#eval-fail-detail")
            expect(detail).to_contain_text("Which way does the square move?")
            expect(detail).to_contain_text("Right answer")
            expect(page.locator(".toast-body.error")).to_have_count(0)
        finally:
            browser.close()
    assert errors == []
