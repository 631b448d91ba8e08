"""The chat engine: prompts as in training, two streamed answers, the model cache, answer rendering."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from studio.chat_engine import (
    AnswerState,
    ChatSettings,
    ModelCache,
    answer_messages,
    chat_conversation,
    parse_question,
    sample_question,
    stream_answers,
    verdict,
)
from studio.models import for_token_size
from studio.tabs.chat import SMALLEST_VISUAL_TOKEN_PX
from trainer.core.errors import ConfigError, DataError
from trainer.core.paths import TINY_QWEN3_VL_DIR
from trainer.core.video_config import VideoConfig
from trainer.data.records import MCQRecord
from trainer.data.registry import load_dataset_use
from trainer.model.families import family_of_model
from trainer.rollout.hf import conversation

SETTINGS = ChatSettings(max_new_tokens=24, greedy=True, fps=2.0, max_frames=8)


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(capacity=2, device="cpu")


@pytest.fixture(scope="module")
def record(synthetic_dir, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("ws")
    return load_dataset_use("synthetic_motion_eval", workspace, seed=0, check_videos=False)[0]


@pytest.fixture(scope="module")
def tiny_copy(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model under a second path: another cache entry, same weights."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("models") / "tiny-copy"))


def _greedy_reference(loaded, messages, settings: ChatSettings = SETTINGS) -> str:
    from trainer.data.inputs import build_inputs

    inputs = build_inputs(loaded.processor, [messages])
    out = loaded.model.generate(**inputs, **settings.generation_kwargs(loaded.processor))
    return loaded.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_dataset_sample_asks_exactly_the_training_prompt(record):
    video_cfg = SETTINGS.video_config()
    messages = chat_conversation(record.video, sample_question(record), record.mode, video_cfg)
    assert messages == conversation(record, video_cfg)
    assert parse_question(sample_question(record)) == (record.question, record.options)


def test_two_models_stream_and_end_with_the_greedy_answer(cache, record, tiny_model_dir, tiny_copy):
    messages = chat_conversation(record.video, sample_question(record), record.mode, SETTINGS.video_config())
    snapshots = list(stream_answers(cache, [str(tiny_model_dir), str(tiny_copy)], messages, SETTINGS))

    final = snapshots[-1]
    assert [s.status for s in final] == ["done", "done"]
    reference = _greedy_reference(cache.get(str(tiny_model_dir)), messages)
    assert reference
    assert [s.text for s in final] == [reference, reference]
    for slot in (0, 1):
        texts = [snap[slot].text for snap in snapshots]
        # The text grows piece by piece: every snapshot extends the one before it.
        assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
        assert len({t for t in texts if t}) >= 3
    assert final[0].seconds > 0


def test_cache_reuses_loaded_models_and_drops_the_least_recent(cache, tiny_model_dir, tiny_copy, tmp_path):
    tiny = cache.get(str(tiny_model_dir))
    assert cache.get(str(tiny_model_dir)) is tiny
    copy = cache.get(str(tiny_copy))
    assert cache.paths() == [str(tiny_model_dir.resolve()), str(tiny_copy.resolve())]
    third = Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-third"))
    cache.get(str(tiny_model_dir))  # now the copy is the least recently used
    cache.get(str(third))
    assert cache.paths() == [str(tiny_model_dir.resolve()), str(third.resolve())]
    assert str(tiny_copy) not in cache
    assert cache.get(str(tiny_model_dir)) is tiny
    assert cache.get(str(tiny_copy)) is not copy


@pytest.mark.parametrize("max_pixels", [SMALLEST_VISUAL_TOKEN_PX, SETTINGS.max_pixels])
def test_two_families_answer_side_by_side_each_with_its_own_frames(cache, record, tiny_model_dir, max_pixels):
    """Tiny Qwen2.5-VL (28 px tokens) and tiny Qwen3-VL (32 px) answer one question; at the chat's
    smallest max pixels (one 28 px token) the Qwen3-VL frames still get one token of their own."""
    settings = replace(SETTINGS, max_pixels=max_pixels)
    messages = chat_conversation(record.video, sample_question(record), record.mode, settings.video_config())
    paths = [str(tiny_model_dir), str(TINY_QWEN3_VL_DIR)]
    final = list(stream_answers(cache, paths, messages, settings))[-1]
    assert [(s.status, s.error) for s in final] == [("done", None), ("done", None)]
    for state, path in zip(final, paths, strict=True):
        loaded = cache.get(path)
        own = for_token_size(messages, family_of_model(loaded.model).pixels_per_token)
        assert state.text and state.text == _greedy_reference(loaded, own, settings)


def test_errors_show_in_their_pane_and_the_other_pane_answers(cache, record, tiny_model_dir, tmp_path):
    messages = chat_conversation(record.video, sample_question(record), record.mode, SETTINGS.video_config())
    missing = tmp_path / "run" / "checkpoint-9"
    final = list(stream_answers(cache, [str(tiny_model_dir), str(missing)], messages, SETTINGS))[-1]
    assert final[0].status == "done" and final[0].text
    assert (final[1].status, final[1].error) == ("error", f"model folder not found: {missing}")
    assert answer_messages(final[1]) == [
        {"role": "assistant", "content": f"**Error:** model folder not found: {missing}"}
    ]


@pytest.mark.parametrize(
    "content, says",
    [(b"\x00not a video" * 50, "cannot decode video {video}: "), (b"", "empty file (0 bytes): {video}")],
)
def test_corrupt_video_is_an_error_not_a_crash(cache, tiny_model_dir, tmp_path, content, says):
    """The pane says what is wrong with the file, not that torchvision lacks read_video (what
    qwen-vl-utils' fallback reader raised on torchvision 0.29)."""
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    messages = chat_conversation(
        str(video), "Which way?\n(A) left\n(B) right", "think", SETTINGS.video_config()
    )
    final = list(stream_answers(cache, [str(tiny_model_dir)], messages, SETTINGS))[-1]
    assert final[0].status == "error"
    assert final[0].error.startswith(says.format(video=video))
    assert "read_video" not in final[0].error


# ---- LoRA checkpoints ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory) -> tuple[Path, object]:
    """A LoRA checkpoint as a run saves it (adapters + merger, processor, train_config.yaml), made
    from the tiny model loaded the way the studio's trainer loads it: from the repository folder,
    by the presets' relative path. Also the trained model, merged, to compare answers with."""
    import os

    import torch

    from tests.helpers.lora import trained_lora
    from trainer.core.paths import REPO_ROOT
    from trainer.model.loading import load_policy

    torch.manual_seed(0)
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # contextlib.chdir is Python 3.11+
    try:
        base, processor = load_policy("assets/tiny-qwen2.5-vl")
    finally:
        os.chdir(cwd)
    lora = trained_lora(base)
    checkpoint = tmp_path_factory.mktemp("lora-run") / "out" / "checkpoint-2"
    lora.save_pretrained(str(checkpoint))
    processor.save_pretrained(str(checkpoint))
    (checkpoint / "train_config.yaml").write_text("model:\n  model_name_or_path: assets/tiny-qwen2.5-vl\n")
    return checkpoint, lora.merge_and_unload().eval()


def test_a_lora_checkpoint_answers_in_chat_as_the_trained_model(
    cache, record, lora_checkpoint, tmp_path, monkeypatch
):
    """Issue 23: a LoRA run's checkpoint (no config.json) loads in Chat onto its base model and
    answers; the studio's working folder is not the trainer's."""
    import json
    from types import SimpleNamespace

    checkpoint, trained = lora_checkpoint
    assert not (checkpoint / "config.json").exists()
    base = json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute()  # peft wrote where the model was loaded from, from any folder
    monkeypatch.chdir(tmp_path)
    messages = chat_conversation(record.video, sample_question(record), record.mode, SETTINGS.video_config())
    final = list(stream_answers(cache, [str(checkpoint)], messages, SETTINGS))[-1]
    assert (final[0].status, final[0].error) == ("done", None)
    loaded = cache.get(str(checkpoint))
    assert final[0].text == _greedy_reference(
        SimpleNamespace(model=trained, processor=loaded.processor), messages
    )


def test_a_lora_checkpoint_whose_base_folder_is_no_model_loads_from_its_run_config(
    cache, record, lora_checkpoint, tmp_path
):
    """The base model named in adapter_config.json is a folder without config.json (the error the
    user saw): the run config saved beside the adapters names it; without that, the error says
    which checkpoint and what each file names."""
    import json

    checkpoint = Path(shutil.copytree(lora_checkpoint[0], tmp_path / "run" / "checkpoint-2"))
    not_a_model = tmp_path / "assets" / "tiny-qwen2.5-vl"
    not_a_model.mkdir(parents=True)
    adapter = json.loads((checkpoint / "adapter_config.json").read_text())
    adapter["base_model_name_or_path"] = str(not_a_model)
    (checkpoint / "adapter_config.json").write_text(json.dumps(adapter))
    messages = chat_conversation(record.video, sample_question(record), record.mode, SETTINGS.video_config())
    final = list(stream_answers(cache, [str(checkpoint)], messages, SETTINGS))[-1]
    assert (final[0].status, final[0].error) == ("done", None) and final[0].text

    orphan = Path(shutil.copytree(checkpoint, tmp_path / "orphan" / "checkpoint-2"))
    (orphan / "train_config.yaml").unlink()
    final = list(stream_answers(cache, [str(orphan)], messages, SETTINGS))[-1]
    assert final[0].error == (
        f"LoRA checkpoint {orphan}: no base model to load it onto: adapter_config.json "
        f"base_model_name_or_path {not_a_model} is not a model folder (no config.json)"
    )


def test_free_question_and_missing_video():
    cfg = ChatSettings().video_config()
    messages = chat_conversation(None, "What happens in the clip?", "think", cfg)
    assert messages == [{"role": "user", "content": [{"type": "text", "text": "What happens in the clip?"}]}]
    with pytest.raises(DataError, match="video not found: /no/such.mp4"):
        chat_conversation("/no/such.mp4", "What happens?", "think", cfg)
    with pytest.raises(ConfigError, match="the question is empty"):
        chat_conversation(None, "  ", "think", cfg)


def test_image_media_uses_the_image_element(tmp_path):
    image = tmp_path / "frame.png"
    image.write_bytes(b"png")
    cfg = ChatSettings(max_pixels=28 * 28 * 4).video_config()
    messages = chat_conversation(str(image), "Color?\n(A) red\n(B) blue", "no_think", cfg)
    element = messages[0]["content"][0]
    # max_pixels below the default min_pixels pulls min_pixels down with it.
    assert element == {"type": "image", "image": str(image), "min_pixels": 3136, "max_pixels": 3136}
    assert messages[0]["content"][1]["text"].endswith(
        "Give the right option inside <answer> </answer> tags, e.g. <answer>(A) text</answer>."
    )


def test_answer_messages_put_think_in_a_thought_and_answer_in_bold():
    streaming = AnswerState(text="<think>it goes <b>", status="generating")
    assert answer_messages(streaming) == [
        {
            "role": "assistant",
            "content": "it goes &lt;b&gt;",
            "metadata": {"title": "think", "status": "pending"},
        }
    ]
    done = AnswerState(text="<think>left</think> <answer>(A) left</answer>", status="done", seconds=1.234)
    assert answer_messages(done, footer="format ✓ · chose A") == [
        {
            "role": "assistant",
            "content": "left",
            "metadata": {"title": "think", "duration": 1.23},
        },
        {"role": "assistant", "content": "**(A) left**\n\n<sub>format ✓ · chose A</sub>"},
    ]
    assert answer_messages(AnswerState(status="loading")) == [
        {"role": "assistant", "content": "_loading model…_"}
    ]


def test_answer_messages_show_what_the_verdict_read():
    # The think block never closed: its <answer> is reasoning, shown in the thought, not in bold,
    # as the verdict says (trainer.score.rewards.split_completion renders and scores both).
    unclosed = AnswerState(text="<think>hmm <answer>(B)</answer>", status="done", seconds=2.0)
    footer = verdict(unclosed.text, {"A": "left", "B": "right"}, "think", "B")
    assert footer == "format ✗ · no option chosen (<think> not closed) · wrong ✗ (answer B)"
    assert answer_messages(unclosed, footer=footer) == [
        {
            "role": "assistant",
            "content": "hmm &lt;answer&gt;(B)&lt;/answer&gt;",
            "metadata": {"title": "think", "duration": 2.0},
        },
        {
            "role": "assistant",
            "content": (
                "<sub>format ✗ · no option chosen (&lt;think&gt; not closed) · wrong ✗ (answer B)</sub>"
            ),
        },
    ]
    # Answer before the reasoning: the answer is read (and shown in bold) all the same.
    first = AnswerState(text="<answer>(B)</answer><think>x</think>", status="done", seconds=1.0)
    assert answer_messages(first) == [
        {"role": "assistant", "content": "x", "metadata": {"title": "think", "duration": 1.0}},
        {"role": "assistant", "content": "**(B)**"},
    ]


def test_verdict_names_format_choice_and_correctness():
    options = {"A": "left", "B": "right"}
    good = "<think>x</think> <answer>(A) left</answer>"
    assert verdict(good, options, "think", "A") == "format ✓ · chose A · correct ✓"
    assert verdict(good, options, "think", "B") == "format ✓ · chose A · wrong ✗ (answer B)"
    assert verdict("(B) right", options, "think", "B") == (
        "format ✗ · no option chosen (no <answer> tag) · wrong ✗ (answer B)"
    )
    assert verdict("hello", {}, "think", None) == "format ✗"


def test_a_numerical_sample_asks_the_training_prompt_and_its_verdict_is_the_reward():
    """A numerical record has no options: the question box holds the training prompt itself, sent
    as typed (the same user turn as trainer.rollout.hf.conversation), and the verdict is the
    accuracy reward training would pay."""
    record = MCQRecord(
        id="n1", video="/v/n.mp4", image=None, question="How many times does the square bounce?",
        options={}, answer="2", source="n.jsonl", index=1, mode="no_think", problem_type="numerical",
    )  # fmt: skip
    text = sample_question(record)
    assert text == (
        "How many times does the square bounce?\n"
        "Give the number inside <answer> </answer> tags, e.g. <answer>42</answer>."
    )
    messages = chat_conversation(None, text, "no_think", VideoConfig())
    assert messages == [{"role": "user", "content": [{"type": "text", "text": text}]}]
    assert verdict("<answer>2</answer>", {}, "no_think", "2", "numerical") == (
        "format ✓ · answered '2' · numerical reward 1.00 (reference '2')"
    )
    assert verdict("<answer>2.0</answer>", {}, "no_think", "2", "numerical") == (
        "format ✓ · answered '2.0' · numerical reward 0.00 (reference '2')"
    )  # Video-R1's rule: a decimal point where the reference has none is wrong
    assert verdict("two", {}, "no_think", "2", "numerical") == (
        "format ✗ · no closed <answer> · numerical reward 0.00 (reference '2')"
    )


def test_cache_rejects_a_zero_capacity():
    with pytest.raises(ConfigError, match="capacity must be >= 1"):
        ModelCache(capacity=0)
