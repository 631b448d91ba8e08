"""The Chat tab's glue: dataset samples, widget values -> settings, and the tab's element ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.chat_engine import ModelCache
from studio.context import StudioContext
from studio.tabs.chat import create_chat_tab, sample_fields, settings_from, user_message
from trainer.core.errors import ConfigError, StudioError


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
        "model_a": "chat-model-a", "model_b": "chat-model-b", "video": "chat-video",
        "question": "chat-question", "ask": "chat-ask", "pane_a": "chat-answer-a",
        "pane_b": "chat-answer-b", "status": "chat-status",
    }  # fmt: skip
    gc.collect()
    assert widgets["model_a"].choices == [("embedded tiny model", widgets["model_a"].value)]


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
    model_a, model_b, dataset = refresh.fn(str(gone), "Qwen/Qwen2.5-VL-3B-Instruct", None)
    values = [v for _, v in model_a.choices]
    assert str(kept) in values and str(gone) not in values
    assert model_a.value == values[0] and model_b.value == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert dataset.value == "synthetic_motion_eval"
    gc.collect()
