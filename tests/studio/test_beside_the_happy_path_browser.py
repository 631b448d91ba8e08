"""Beside the happy path, in a real Chromium: what a person sees when the studio says no.

- Train, Check config on a hub id that cannot be downloaded (HF_HUB_OFFLINE, an empty cache): the
  status says why, in place of the status before it, with no bare red "Error" toast;
- Train, Check config on a dataset smaller than one batch: valid, and the cost says how each batch
  repeats the records, naming per_device_train_batch_size;
- Evaluate, a no_think run: its no_think eval set is offered, and the think set is refused in words;
- Chat, a run deleted in the Runs tab: its checkpoint leaves the pick and the list, model B is the
  newest run's newest checkpoint, and the note under the pickers says the tiny model only knows
  the synthetic task.

No training: runs and checkpoint folders are written straight into the run DB and the workspace.
Screenshots go to /tmp/e2e_shots/beside-*.png for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
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
from test_browser_live_lists import options_of

from studio import text
from studio.context import StudioContext
from studio.tabs.chat import TINY_NOTE, TINY_WHAT
from studio.tabs.evaluate.datasets import check_eval_mode
from tests.helpers.hub import HINT, HUB_ID
from trainer.core.errors import ConfigError
from trainer.run.preflight import small_dataset_notes
from trainer.rundb import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

UI_TIMEOUT_MS = 30_000
CHECK_TIMEOUT_MS = 120_000  # Check loads the tiny model and samples in the studio process
TINY = "assets/tiny-qwen2.5-vl"  # as the presets and the Chat note spell the embedded model
NO_THINK_RUN, OLD_RUN, NEW_RUN = "grpo-nt", "old", "new"
NO_THINK_CONFIG = {
    "model": {"model_name_or_path": TINY},
    "data": {
        "dataset_use": "synthetic_motion_no_think_train",
        "eval_dataset_use": "synthetic_motion_no_think_eval",
    },
}
# 0.4 % of the 2000 no_think training records: 8, fewer than the preset's 16 a batch.
SMALL_DATASET, SMALL_RECORDS, PRESET_BATCH = "synthetic_motion_no_think_train%0.4", 8, 16


def visible(markdown: str) -> str:
    """What a gr.Markdown shows of ``markdown``: the text without its ** and ` marks."""
    return markdown.replace("**", "").replace("`", "")


def seed(workspace: Path) -> dict[str, list[Path]]:
    """Three finished runs, oldest first, each with checkpoint folders carrying their train config:
    a no_think run (Evaluate), then "old" and "new" trained from the tiny model (Chat)."""
    folders: dict[str, list[Path]] = {}
    with RunStore(f"sqlite:///{workspace / 'runs.db'}") as store:
        for name, config, steps in ((NO_THINK_RUN, NO_THINK_CONFIG, (40,)),
                                    (OLD_RUN, {"model": {"model_name_or_path": TINY}}, (2, 4)),
                                    (NEW_RUN, {"model": {"model_name_or_path": TINY}}, (3, 6))):  # fmt: skip
            out = workspace / "outputs" / name
            run = store.create_run(name, config=config, status="finished", output_dir=str(out))
            folders[name] = []
            for step in steps:
                ckpt = out / f"checkpoint-{step}"
                ckpt.mkdir(parents=True)
                (ckpt / "train_config.yaml").write_text(yaml.safe_dump(config))
                store.add_checkpoint(run.id, step, str(ckpt), {})
                folders[name].append(ckpt)
    return folders


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Path]]]:
    workspace = tmp_path_factory.mktemp("beside") / "workspace"
    return workspace, seed(workspace)


@pytest.fixture(scope="module")
def studio(checkpoints: tuple[Path, dict[str, list[Path]]]) -> Iterator[StudioProcess]:
    workspace, _ = checkpoints
    with pytest.MonkeyPatch.context() as mp:
        # The studio process reads these at import: no network, and a hub cache without the model.
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(workspace.parent / "hf"))
        mp.delenv("HF_HUB_CACHE", raising=False)
        with running_studio(workspace, workspace.parent / "studio.log") as proc:
            yield proc


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, studio: StudioProcess) -> Iterator[Any]:
    """A fresh page per test: the form on its preset, whatever the test before typed."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(studio.url)
        yield page
        assert errors == [], errors
    finally:
        page.close()


def shot(page: Any, name: str) -> None:
    SHOTS_FOR_LEAD.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS_FOR_LEAD / f"beside-{name}.png"), full_page=True)


def test_check_of_a_hub_model_that_cannot_be_downloaded_says_why(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, text.TAB_TRAIN)
    status = page.locator("#train-status")
    # A status to be replaced: loading the form's own YAML changes nothing, and says so.
    open_accordion(page, "train-section-yaml")
    page.locator("#train-load-yaml").click()
    expect(status).to_contain_text(text.YAML_UNCHANGED)

    model = page.locator("#train-model_name_or_path input").first
    model.fill(HUB_ID)
    model.press("Enter")
    page.locator("#train-check").click()
    headline = status.locator("p").first  # the reason, not the folded details under it
    expect(headline).to_contain_text(
        visible(text.PREFLIGHT_FAILED.format(error="")), timeout=CHECK_TIMEOUT_MS
    )
    expect(headline).to_contain_text(
        f"model_name_or_path: {HUB_ID} could not be downloaded: HF_HUB_OFFLINE is set and the local "
        f"cache lacks it; {HINT}"
    )
    expect(headline).to_be_visible()
    expect(status).not_to_contain_text(text.YAML_UNCHANGED)
    expect(page.locator("#train-preflight")).to_be_hidden()
    expect(page.locator(".toast-body.error")).to_have_count(0)
    # The published estimate is folded under Details, one click away.
    status.locator("details summary").click()
    expect(status.locator("details pre")).to_contain_text("from its published architecture")
    shot(page, "hub-model-offline")


def test_check_of_a_dataset_smaller_than_a_batch_names_the_batch_size(page: Any) -> None:
    from playwright.sync_api import expect

    open_tab(page, text.TAB_TRAIN)
    fill_field(page, "train-dataset_use", SMALL_DATASET)
    page.locator("#train-check").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text("Config is valid", timeout=CHECK_TIMEOUT_MS)
    cost = page.locator("#train-preflight-cost")
    expect(cost).to_be_visible()
    [note] = small_dataset_notes(SMALL_RECORDS, PRESET_BATCH)
    expect(cost).to_contain_text(note)
    expect(cost).to_contain_text(f"fewer than per_device_train_batch_size {PRESET_BATCH}")
    cost.scroll_into_view_if_needed()
    shot(page, "small-dataset")


def test_a_no_think_run_is_offered_its_eval_set_and_refused_the_think_one(
    page: Any, studio: StudioProcess, checkpoints: tuple[Path, dict[str, list[Path]]]
) -> None:
    from playwright.sync_api import expect

    workspace, folders = checkpoints
    open_tab(page, text.TAB_EVALUATE)
    pick_option(page, "eval-run", re.compile(rf"^#\d+ {NO_THINK_RUN} "))
    expect(page.locator("#eval-checkpoint input")).to_have_value(f"{NO_THINK_RUN} · step 40")
    dataset = page.locator("#eval-dataset input")
    expect(dataset).to_have_value("synthetic_motion_no_think_eval")

    pick_option(page, "eval-dataset", re.compile(r"^\W*synthetic_motion_eval$"))
    expect(dataset).to_have_value("synthetic_motion_eval")
    fill_field(page, "eval-max-records", 4)
    page.locator("#eval-start").click()
    ctx = StudioContext(workspace)
    try:
        run_id = next(r.id for r in ctx.store.list_runs() if r.name == NO_THINK_RUN)
        with pytest.raises(ConfigError) as refused:
            check_eval_mode(ctx, str(folders[NO_THINK_RUN][0]), "synthetic_motion_eval", run_id, False)
        status = page.locator("#eval-status")
        expect(status).to_contain_text(f"Not started: {refused.value}")
        expect(status).to_contain_text("is think but checkpoint-40's dataset_use")
        assert ctx.store.jobs() == []  # refused before a job started
    finally:
        ctx.store.close()
    shot(page, "eval-think-refused")


def test_chat_drops_a_deleted_runs_checkpoint_and_defaults_to_the_newest(
    page: Any, checkpoints: tuple[Path, dict[str, list[Path]]]
) -> None:
    from playwright.sync_api import expect

    model_a, model_b = page.locator("#chat-model-a input"), page.locator("#chat-model-b input")
    note = page.locator("#chat-model-note")
    a_line = TINY_NOTE.format(panes="Model A", what=TINY_WHAT[False, False], model=TINY)
    b_line = TINY_NOTE.format(panes="Model B", what=TINY_WHAT[True, False], model=TINY)

    open_tab(page, text.TAB_CHAT)
    # B: the newest run's newest checkpoint (it was the oldest run's oldest); A: its base model.
    expect(model_b).to_have_value(f"{NEW_RUN} · step 6")
    expect(model_a).to_have_value(f"{NEW_RUN} · base model")
    expect(note).to_be_visible()
    expect(note).to_contain_text(visible(a_line))
    expect(note).to_contain_text(visible(b_line))

    pick_option(page, "chat-model-b", f"{OLD_RUN} · step 4")
    expect(model_b).to_have_value(f"{OLD_RUN} · step 4")

    open_tab(page, text.TAB_RUNS)
    pick_option(page, "runs-select", re.compile(rf"^#\d+ {OLD_RUN} "))
    page.keyboard.press("Escape")
    page.locator("#runs-delete").click()
    page.locator("#runs-confirm-delete").click()
    expect(page.locator("#runs-message")).to_contain_text(re.compile(rf"Deleted #\d+ {OLD_RUN}\."))
    expect(page.locator("#runs-table")).not_to_contain_text(OLD_RUN)

    for reloaded in (False, True):
        if reloaded:
            page.reload()
        open_tab(page, text.TAB_CHAT)
        expect(model_b).to_have_value(f"{NEW_RUN} · step 6")
        offered = options_of(page, "chat-model-b")
        assert f"{NEW_RUN} · step 6" in offered and f"{NEW_RUN} · step 3" in offered, offered
        assert not [o for o in offered if o.startswith(f"{OLD_RUN} ·")], offered
        expect(note).to_contain_text(visible(b_line))
    expect(page.get_by_role("option")).to_have_count(0)  # the list read above has closed
    shot(page, "chat-after-delete")
