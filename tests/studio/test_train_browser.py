"""The Train tab in a real browser, from a fresh workspace, as a new user meets it:

- pick the built-in think dataset, press Use, Check config: sampled completions and no warning;
  Launch; the run's first steps earn rewards above 0 (read from the run database);
- open every section, Check config: the preset is valid (opening a section changes no value);
- the tiny Qwen2-VL and Qwen3-VL check and train from the Model box (Qwen3-VL's 32 px visual
  tokens rescale the pixel budgets when it is picked);
- a screenshot of the tab after Check (kept in /tmp/e2e_shots/ for people to look at).
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM_ARGS,
    StudioProcess,
    open_accordion,
    open_tab,
    pick_option,
    running_studio,
    stop_active_runs,
    wait_for_plot,
)
from studio_helpers import wait_for
from test_browser_e2e import SHOTS_FOR_LEAD

from trainer.core import metrics_keys as mk
from trainer.core.config import SECTIONS
from trainer.rundb import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

UI_TIMEOUT_MS = 30_000
# Check loads the tiny model and samples 4 groups in the studio process; a launch starts torch.
CHECK_TIMEOUT_MS = 120_000
FIRST_STEPS_TIMEOUT_S = 180.0
THINK_DATASET = "synthetic_motion_train"


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[StudioProcess]:
    workspace = tmp_path / "workspace"
    with running_studio(workspace, tmp_path / "studio.log") as proc:
        try:
            yield proc
        finally:
            stop_active_runs(workspace)


@pytest.fixture
def page(chromium: Path, studio: StudioProcess) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(studio.url)
            open_tab(page, "Train")
            yield page
            assert errors == [], errors
        finally:
            browser.close()


def check_config(page: Any) -> Any:
    """Press Check config and wait for its verdict; returns the status locator."""
    from playwright.sync_api import expect

    status = page.locator("#train-status")
    page.locator("#train-check").click()
    expect(status).to_contain_text(re.compile("Config is valid|Config error"), timeout=CHECK_TIMEOUT_MS)
    return status


def test_think_dataset_checks_clean_and_first_steps_earn_rewards(page: Any, studio: StudioProcess) -> None:
    from playwright.sync_api import expect

    pick_option(page, "train-dataset-pick", re.compile(f"^{THINK_DATASET}$"))
    page.locator("#train-use-datasets").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text(f"dataset_use = {THINK_DATASET}")
    expect(status).to_contain_text("eval_dataset_use = synthetic_motion_eval")
    expect(
        page.locator("#train-eval_dataset_use input, #train-eval_dataset_use textarea").first
    ).to_have_value("synthetic_motion_eval")

    check_config(page)
    expect(status).to_contain_text("the run can learn")
    expect(status).not_to_contain_text("warns")
    # Gradio's table is virtual (rows render as they scroll); its grid says how many there are.
    table = page.locator("#train-preflight-table")
    expect(table.locator("[role=grid]")).to_have_attribute("aria-rowcount", "17")  # header + 4 x G=4
    expect(table).to_contain_text("</think> <answer>")
    expect(page.locator("#train-preflight-cost")).to_contain_text("prompt tokens per question")
    expect(page.locator("#train-preflight-cost")).to_contain_text("memory estimate on")
    shot = studio.workspace.parent / "train_tab.png"
    page.screenshot(path=str(shot), full_page=True)
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SHOTS_FOR_LEAD / "train_tab_checked.png")

    page.locator("#train-launch").click()
    expect(status).to_contain_text("Launched run", timeout=UI_TIMEOUT_MS)
    store = RunStore(f"sqlite:///{studio.workspace / 'runs.db'}")
    try:
        [run] = store.list_runs()

        def first_rewards() -> list[float]:
            series = store.metrics_since(run.id, names=[mk.TOTAL_REWARD]).get(mk.TOTAL_REWARD)
            current = store.get_run(run.id)
            assert current.status not in ("failed", "aborted"), current.error
            return list(series.values) if series and len(series.values) >= 3 else []

        rewards = wait_for(first_rewards, FIRST_STEPS_TIMEOUT_S, "three steps of total reward")
        assert all(r > 0 and not math.isnan(r) for r in rewards[:3]), rewards
        # ... and they differ within groups, so the advantages carry a signal to learn from.
        flat = store.metrics_since(run.id, names=[mk.ZERO_STD_FRACTION])[mk.ZERO_STD_FRACTION].values
        assert all(f < 1 for f in flat[:3]), flat
        config = store.get_config(run.id).config
        assert config["data"]["dataset_use"] == THINK_DATASET
        assert config["grpo"]["generation_max_length"] == 32
    finally:
        store.close()


def test_every_section_opened_the_preset_is_still_valid(page: Any) -> None:
    from playwright.sync_api import expect

    for section in SECTIONS:
        open_accordion(page, f"train-section-{section}")
    open_accordion(page, "train-section-yaml")
    # The optional budget stays empty ("not set"), never 0, once its section is rendered.
    expect(page.locator("#train-total_pixels input, #train-total_pixels textarea").first).to_have_value("")
    expect(page.locator("#train-section-video")).to_contain_text("Video sampling")
    expect(page.locator("#train-section-video")).not_to_contain_text("changed from the preset")
    status = check_config(page)
    expect(status).to_contain_text("Config is valid")
    expect(status).to_contain_text("the run can learn")
    # A typed change is counted in its section's title; an integer field refuses 2.5 by name.
    box = page.locator("#train-fps input, #train-fps textarea").first
    box.fill("4.0")
    box.press("Tab")
    expect(page.locator("#train-section-video")).to_contain_text("1 changed from the preset")
    g = page.locator("#train-grpo_sample_size input, #train-grpo_sample_size textarea").first
    g.fill("2.5")
    g.press("Tab")
    page.locator("#train-check").click()
    expect(status).to_contain_text(
        "grpo_sample_size: expected an integer, got '2.5'", timeout=CHECK_TIMEOUT_MS
    )


def test_the_second_family_checks_and_learns_from_the_train_tab(page: Any, studio: StudioProcess) -> None:
    """The model picker offers the tiny Qwen2-VL; Check runs its pre-flight; a folder of an
    unsupported family is refused naming the supported ones; Launch trains it."""
    from playwright.sync_api import expect

    status = page.locator("#train-status")
    unsupported = studio.workspace.parent / "llava-model"
    unsupported.mkdir()
    (unsupported / "config.json").write_text('{"model_type": "llava_onevision"}')
    model = page.locator("#train-model_name_or_path input").first
    model.fill(str(unsupported))
    model.press("Enter")
    check_config(page)
    expect(status).to_contain_text("model_type 'llava_onevision' is not supported")
    expect(status).to_contain_text("Qwen2-VL (qwen2_vl)")

    pick_option(page, "train-model_name_or_path", "assets/tiny-qwen2-vl")
    check_config(page)
    expect(status).to_contain_text("Config is valid")
    expect(status).to_contain_text("the run can learn")
    shot = studio.workspace.parent / "train_tab_qwen2_vl.png"
    page.screenshot(path=str(shot), full_page=True)
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SHOTS_FOR_LEAD / shot.name)

    page.locator("#train-launch").click()
    expect(status).to_contain_text("Launched run", timeout=UI_TIMEOUT_MS)
    store = RunStore(f"sqlite:///{studio.workspace / 'runs.db'}")
    try:
        [run] = store.list_runs()
        assert store.get_config(run.id).config["model"]["model_name_or_path"].endswith("tiny-qwen2-vl")

        def first_rewards() -> list[float]:
            series = store.metrics_since(run.id, names=[mk.FORMAT_REWARD]).get(mk.FORMAT_REWARD)
            current = store.get_run(run.id)
            assert current.status not in ("failed", "aborted"), current.error
            return list(series.values) if series and len(series.values) >= 3 else []

        # The warm-started format: its answers parse from the first steps.
        assert all(r > 0.5 for r in wait_for(first_rewards, FIRST_STEPS_TIMEOUT_S, "three steps")[:3])
    finally:
        store.close()


def test_qwen3_vl_rescales_the_pixels_checks_and_plots_rewards(page: Any, studio: StudioProcess) -> None:
    """Picking the tiny Qwen3-VL rescales the preset's pixel budgets to its 32 px tokens (3136 px
    would be one token a frame) and says so; Check names the family next to the visual tokens;
    Launch trains it with the rescaled budgets and the Monitor plots its rewards."""
    from playwright.sync_api import expect

    status = page.locator("#train-status")
    # The "/" is escaped: Playwright hands the pattern to the page as /source/.
    pick_option(page, "train-model_name_or_path", re.compile(r"^assets\/tiny-qwen3-vl — Qwen3-VL$"))
    expect(status).to_contain_text("Pixel budgets rescaled for Qwen3-VL's 32 px visual tokens")
    expect(status).to_contain_text("min_pixels 3136 -> 4096, max_pixels 3136 -> 4096")
    open_accordion(page, "train-section-video")
    for name in ("min_pixels", "max_pixels"):
        expect(page.locator(f"#train-{name} input, #train-{name} textarea").first).to_have_value("4096")
    expect(page.locator("#train-total_pixels input, #train-total_pixels textarea").first).to_have_value("")
    expect(page.locator("#train-section-video")).to_contain_text("2 changed from the preset")

    check_config(page)
    expect(status).to_contain_text("Config is valid")
    cost = page.locator("#train-preflight-cost")
    expect(cost).to_contain_text(re.compile(r"\(\d+ video tokens of Qwen3-VL, 32 x 32 px each\)"))
    expect(cost).to_contain_text("model: Qwen3-VL, ")
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS_FOR_LEAD / "train_tab_qwen3_vl.png"), full_page=True)

    page.locator("#train-launch").click()
    expect(status).to_contain_text("Launched run", timeout=UI_TIMEOUT_MS)
    store = RunStore(f"sqlite:///{studio.workspace / 'runs.db'}")
    try:
        [run] = store.list_runs()
        config = store.get_config(run.id).config
        assert config["model"]["model_name_or_path"].endswith("tiny-qwen3-vl")
        assert (config["video"]["min_pixels"], config["video"]["max_pixels"]) == (4096, 4096)

        def two_rewards() -> list[float]:
            series = store.metrics_since(run.id, names=[mk.TOTAL_REWARD]).get(mk.TOTAL_REWARD)
            current = store.get_run(run.id)
            assert current.status not in ("failed", "aborted"), current.error
            return list(series.values) if series and len(series.values) >= 2 else []

        rewards = wait_for(two_rewards, FIRST_STEPS_TIMEOUT_S, "two steps of total reward")
        assert not any(math.isnan(r) for r in rewards), rewards
    finally:
        store.close()
    # The Monitor follows the launched run: every GRPO subplot, the rewards among them, has points.
    open_tab(page, "Monitor")
    wait_for_plot(page, "monitor-plot-grpo", min_traces=6, min_points=2)
    page.screenshot(path=str(SHOTS_FOR_LEAD / "monitor_qwen3_vl.png"), full_page=True)
