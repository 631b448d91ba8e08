"""The Chat tab's glue: dataset samples, widget values -> settings, and the tab's element ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from studio_helpers import finished_run_with_checkpoints

from studio.chat_engine import ModelCache
from studio.context import StudioContext
from studio.tabs.chat import (
    TINY_NOTE,
    TINY_WHAT,
    create_chat_tab,
    model_note,
    sample_fields,
    settings_from,
    user_message,
)
from trainer.core.errors import ConfigError, StudioError
from trainer.core.paths import TINY_MODEL_DIR, TINY_QWEN2_VL_DIR

HUB_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


@pytest.fixture()
def ctx(tmp_path: Path) -> StudioContext:
    return StudioContext(tmp_path / "ws", f"sqlite:///{tmp_path / 'runs.db'}")


def test_sample_fields_pick_a_record_and_name_the_valid_range(ctx, synthetic_dir):
    record, total = sample_fields(ctx, "synthetic_motion_eval", 2)
    assert (record.id, total) == ("m_2003", 200)
    assert record.video == str(synthetic_dir / "videos" / "m_2003.mp4")
    with pytest.raises(StudioError, match="synthetic_motion_eval has records 0..199; there is no record 200"):
        sample_fields(ctx, "synthetic_motion_eval", 200)
    with pytest.raises(StudioError, match="pick a dataset first"):
        sample_fields(ctx, None, 0)


def test_settings_from_widget_values():
    s = settings_from(64.0, 0.5, 0.8, False, 1.0, 6.0, 3136.0)
    assert (s.max_new_tokens, s.temperature, s.top_p, s.greedy, s.fps, s.max_frames, s.max_pixels) == (
        64, 0.5, 0.8, False, 1.0, 6, 3136,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="max_frames must be >= 2"):
        settings_from(64, 0.5, 0.8, True, 1.0, 1, 3136).video_config()


def test_user_message_names_the_video():
    assert user_message(" Which way?\n", "/a/b/m_1.mp4") == {
        "role": "user",
        "content": "*video* `m_1.mp4`\n\nWhich way?",
    }
    assert user_message("Which way?", None) == {"role": "user", "content": "Which way?"}


# Building gr.Blocks leaves asyncio loops and sockets unclosed inside gradio (ResourceWarning at
# garbage collection); they are collected here, under this filter, so no later test trips on them.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tab_builds_with_its_element_ids(ctx):
    import gc

    import gradio as gr

    cache = ModelCache(capacity=2, device="cpu")
    with gr.Blocks():
        widgets = create_chat_tab(ctx, cache)
    assert widgets["cache"] is cache
    ids = {name: w.elem_id for name, w in widgets.items() if name not in ("cache", "refresh")}
    assert ids == {
        "model_a": "chat-model-a", "model_b": "chat-model-b", "model_note": "chat-model-note",
        "video": "chat-video",
        "question": "chat-question", "ask": "chat-ask", "pane_a": "chat-answer-a",
        "pane_b": "chat-answer-b", "status": "chat-status",
    }  # fmt: skip
    gc.collect()
    assert widgets["model_a"].choices == [("embedded tiny model", widgets["model_a"].value)]
    # No run yet: both panes on the tiny model, and the note under the pickers says what it knows.
    assert widgets["model_b"].value == widgets["model_a"].value == str(TINY_MODEL_DIR)
    assert widgets["model_note"].value == TINY_NOTE.format(
        panes="Models A and B", what="are the embedded tiny model", model="assets/tiny-qwen2.5-vl"
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gradio's loops
def test_shown_tab_offers_only_checkpoints_on_disk_and_replaces_a_gone_pick(ctx, tmp_path):
    """What selecting the tab does: re-read runs and the disk; a checkpoint deleted by
    save_total_limit is neither offered nor kept as the pick, a typed hub id is kept."""
    import gc

    import gradio as gr

    with gr.Blocks():
        widgets = create_chat_tab(ctx, ModelCache(capacity=1, device="cpu"))
    run = ctx.store.create_run("late")  # made after the page was built
    kept, gone = tmp_path / "checkpoint-4", tmp_path / "checkpoint-2"
    for step, path in ((2, gone), (4, kept)):
        path.mkdir()
        ctx.store.add_checkpoint(run.id, step, str(path), {})
    gone.rmdir()
    refresh = widgets["refresh"]
    assert refresh.outputs[:2] == [widgets["model_a"], widgets["model_b"]]
    model_a, model_b, dataset, offered = refresh.fn(str(gone), HUB_MODEL, None, None)
    values = [v for _, v in model_a.choices]
    assert str(kept) in values and str(gone) not in values and offered["values"] == values
    assert model_a.value == values[0] and model_b.value == HUB_MODEL
    assert dataset.value == "synthetic_motion_eval"
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gradio's loops
def test_model_b_starts_on_the_newest_runs_newest_checkpoint_and_a_on_its_base(ctx, tmp_path):
    """Issue 23: B defaulted to the last choice, the oldest run's oldest checkpoint."""
    import gc

    import gradio as gr

    finished_run_with_checkpoints(ctx, tmp_path, "old", (2, 4), base="/models/old-base")
    _, new = finished_run_with_checkpoints(ctx, tmp_path, "new", (3, 6), base=str(TINY_QWEN2_VL_DIR))
    ctx.store.create_run("queued-later", config={"model": {"model_name_or_path": HUB_MODEL}})  # no checkpoint
    with gr.Blocks():
        widgets = create_chat_tab(ctx, ModelCache(capacity=1, device="cpu"))
    assert (widgets["model_a"].value, widgets["model_b"].value) == (str(TINY_QWEN2_VL_DIR), new[-1])
    # An emptied pick falls back to the same default; a folder typed by hand is kept as typed.
    typed = str(tmp_path / "my-model")
    model_a, model_b, _, _ = widgets["refresh"].fn(typed, None, None, None)
    assert (model_a.value, model_b.value) == (typed, new[-1])
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gradio's loops
def test_a_pane_left_on_its_default_moves_on_to_a_newer_checkpoint_a_pick_stays(ctx, tmp_path):
    """The page was built before any run (both panes on the tiny model); a run trained since is
    what B shows when the tab is selected. A checkpoint the user picked stays picked."""
    import gc

    import gradio as gr

    with gr.Blocks():
        widgets = create_chat_tab(ctx, ModelCache(capacity=1, device="cpu"))
    refresh, tiny = widgets["refresh"], str(TINY_MODEL_DIR)
    state = refresh.inputs[3].value
    assert (widgets["model_a"].value, widgets["model_b"].value) == (tiny, tiny)
    _, first = finished_run_with_checkpoints(ctx, tmp_path, "first", (2, 4), base=str(TINY_QWEN2_VL_DIR))
    model_a, model_b, _, state = refresh.fn(tiny, tiny, None, state)
    assert (model_a.value, model_b.value) == (str(TINY_QWEN2_VL_DIR), first[-1])
    # The user picks the first run's older checkpoint in B; a newer run does not move it, and A,
    # still on its default, follows the newer run's base model.
    _, second = finished_run_with_checkpoints(ctx, tmp_path, "second", (5,), base=tiny)
    model_a, model_b, _, state = refresh.fn(model_a.value, first[0], None, state)
    assert (model_a.value, model_b.value) == (tiny, first[0])
    assert state["defaults"] == [tiny, second[-1]]
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gradio's loops
@pytest.mark.parametrize("delete_files", [False, True])
def test_a_deleted_runs_checkpoint_leaves_the_list_and_the_pick(ctx, tmp_path, delete_files):
    """Issue 23: after its run was deleted (rows only, or with its folder) Chat kept offering and
    selecting its checkpoint; a refresh drops it and the pane falls back to its default, while a
    typed hub id stays."""
    import gc
    import shutil

    import gradio as gr

    old_run, old = finished_run_with_checkpoints(ctx, tmp_path, "old", (2, 4), base=str(TINY_MODEL_DIR))
    _, new = finished_run_with_checkpoints(ctx, tmp_path, "new", (3, 6), base=str(TINY_MODEL_DIR))
    with gr.Blocks():
        widgets = create_chat_tab(ctx, ModelCache(capacity=1, device="cpu"))
    refresh = widgets["refresh"]
    built_with = refresh.inputs[3].value  # the page's State: what the pickers offered when built
    assert old[-1] in built_with["values"]
    # The user picks the old run's checkpoint in B and a hub id in A, then deletes the old run.
    ctx.store.delete_run(old_run.id)
    if delete_files:
        shutil.rmtree(tmp_path / "old")
    model_a, model_b, _, offered = refresh.fn(HUB_MODEL, old[-1], None, built_with)
    values = [v for _, v in model_b.choices]
    assert not set(old) & set(values) and offered["values"] == values
    assert (model_a.value, model_b.value) == (HUB_MODEL, new[-1])
    # The next refresh (its State now the list just offered) keeps the fallback and the typed id.
    model_a, model_b, _, _ = refresh.fn(model_a.value, model_b.value, None, offered)
    assert (model_a.value, model_b.value) == (HUB_MODEL, new[-1])
    gc.collect()


def test_the_note_under_the_pickers_names_a_tiny_model_and_checkpoints_trained_from_one(tmp_path):
    """Issue 23: on real videos the tiny model writes gibberish and nothing said it only knows
    the synthetic task."""
    tiny_run = tmp_path / "run" / "checkpoint-4"
    tiny_run.mkdir(parents=True)
    (tiny_run / "train_config.yaml").write_text("model:\n  model_name_or_path: assets/tiny-qwen2-vl\n")
    real_run = tmp_path / "real" / "checkpoint-4"
    real_run.mkdir(parents=True)
    (real_run / "train_config.yaml").write_text(f"model:\n  model_name_or_path: {HUB_MODEL}\n")

    a_line = TINY_NOTE.format(panes="Model A", what=TINY_WHAT[False, False], model="assets/tiny-qwen2.5-vl")
    b_line = TINY_NOTE.format(panes="Model B", what=TINY_WHAT[True, False], model="assets/tiny-qwen2-vl")
    assert a_line == (
        "**Model A** is the embedded tiny model `assets/tiny-qwen2.5-vl`: a tiny model trained only "
        "on the synthetic motion task; it writes nonsense on real videos."
    )
    assert b_line.startswith("**Model B** was trained from the embedded tiny model `assets/tiny-qwen2-vl`")
    assert model_note(str(TINY_MODEL_DIR), str(tiny_run)) == f"{a_line}\n\n{b_line}"
    assert model_note(str(tiny_run), str(tiny_run)).startswith(
        "**Models A and B** were trained from the embedded tiny model `assets/tiny-qwen2-vl`"
    )
    assert model_note("assets/tiny-qwen2.5-vl", HUB_MODEL) == a_line  # as the presets spell it
    assert model_note(str(real_run), HUB_MODEL) == ""
    assert model_note(None, str(tmp_path / "gone")) == ""


def test_the_sample_line_says_what_its_number_is(ctx, synthetic_dir):
    from studio.tabs.chat import ChatHandlers

    *_, info = ChatHandlers(ctx, ModelCache()).on_load_sample("synthetic_motion_eval", 2)
    assert info == "Record **m_2003** (record number 2 of 200, counted from 0) · answer **(C)**"
