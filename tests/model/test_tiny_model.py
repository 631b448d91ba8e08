"""The embedded tiny Qwen2.5-VL (assets/tiny-qwen2.5-vl) and trainer.model.loading: it loads like the real
model, uses 3-D rope for video tokens, and after the format warm start answers in the right format
at chance accuracy on held-out synthetic videos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.core.errors import ConfigError
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.prompts import NO_THINK, THINK, user_text
from trainer.model.loading import generation_kwargs, load_policy, vision_suppress_token_ids
from trainer.score.rewards import accuracy_reward, format_reward

N_EVAL = 100
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
                 "<|im_start|>"]  # fmt: skip


@pytest.fixture(scope="module")
def policy(tiny_model_dir: Path) -> tuple:
    torch.manual_seed(0)
    return load_policy(tiny_model_dir)


@pytest.fixture(scope="module")
def eval_set(synthetic_dir: Path) -> tuple[list[dict], dict[str, str], VideoConfig]:
    return load_eval_set(synthetic_dir)


def load_eval_set(synthetic_dir: Path) -> tuple[list[dict], dict[str, str], VideoConfig]:
    """The first held-out records with their questions and letters, and the dataset's video knobs."""
    meta = json.loads((synthetic_dir / "dataset.json").read_text())
    options = {chr(ord("A") + i): text for i, text in enumerate(meta["options"])}
    records = [json.loads(line) for line in (synthetic_dir / "eval.jsonl").read_text().splitlines()][:N_EVAL]
    for record in records:
        record["video"] = str(synthetic_dir / record["video"])
        record["question"] = record["conversations"][0]["value"].split("\n")[1]
        record["letter"] = record["conversations"][1]["value"].split("<answer>(")[1][0]
    return records, options, VideoConfig(**meta["video"])


def _conversations(records: list[dict], options: dict, video: VideoConfig, mode: str) -> list[list[dict]]:
    return [
        [{"role": "user", "content": [video.video_element(r["video"]),
                                      {"type": "text", "text": user_text(r["question"], options, mode)}]}]
        for r in records
    ]  # fmt: skip


def test_loads_like_the_real_model_with_its_token_ids(policy: tuple, tiny_model_dir: Path) -> None:
    model, processor = policy
    tok = processor.tokenizer
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    cfg = model.config
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert (cfg.text_config.eos_token_id, cfg.text_config.pad_token_id, cfg.text_config.bos_token_id) == (
        im_end, eot, eot)  # fmt: skip
    assert model.generation_config.eos_token_id == [im_end, eot]
    assert model.generation_config.suppress_tokens == sorted(tok.convert_tokens_to_ids(VISION_TOKENS))
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert cfg.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    assert cfg.text_config.vocab_size >= len(tok) and len(tok) < 2048
    params = sum(p.numel() for p in model.parameters())
    assert 300_000 < params < 600_000
    size = sum(p.stat().st_size for p in tiny_model_dir.rglob("*") if p.is_file())
    assert size < 20e6


def test_tokenizer_round_trips_answers_and_keeps_special_tokens_whole(policy: tuple) -> None:
    tok = policy[1].tokenizer
    text = "<think>The red square moves.</think> <answer>(B) right</answer>"
    assert tok.decode(tok(text)["input_ids"]) == text
    ids = tok("<|vision_start|><|video_pad|><|vision_end|>", add_special_tokens=False)["input_ids"]
    assert ids == tok.convert_tokens_to_ids(["<|vision_start|>", "<|video_pad|>", "<|vision_end|>"])
    assert tok.decode(tok("héllo wörld 42")["input_ids"]) == "héllo wörld 42"  # byte-level: nothing is <unk>


def test_video_tokens_get_3d_rope_positions(policy: tuple, eval_set: tuple, synthetic_dir: Path) -> None:
    model, processor = policy
    records, options, video = eval_set
    batch = build_inputs(processor, _conversations(records[:2], options, video, THINK))
    video_id = model.config.video_token_id
    is_video = batch["input_ids"] == video_id
    meta = json.loads((synthetic_dir / "dataset.json").read_text())
    assert is_video.sum(dim=1).tolist() == [meta["video_tokens_per_prompt"]] * 2 == [16, 16]
    positions, _ = model.model.get_rope_index(
        batch["input_ids"],
        batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        second_per_grid_ts=batch["second_per_grid_ts"],
        attention_mask=batch["attention_mask"],
    )
    t, h, w = (positions[axis][0][is_video[0]] - positions[axis][0][is_video[0]].min() for axis in range(3))
    # 4 temporal steps x 2 x 2 cells, in (t, h, w) order: time advances 1 per step (4 tokens/s x 0.25 s).
    assert t.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert h.tolist() == [0, 0, 1, 1] * 4
    assert w.tolist() == [0, 1, 0, 1] * 4


def test_generation_kwargs_stop_at_im_end_and_suppress_vision_tokens(policy: tuple) -> None:
    tok = policy[1].tokenizer
    kwargs = generation_kwargs(policy[1], max_new_tokens=24, temperature=0.7, top_p=0.9, top_k=5)
    assert kwargs["eos_token_id"] == tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert kwargs["pad_token_id"] == tok.convert_tokens_to_ids("<|endoftext|>")
    assert kwargs["suppress_tokens"] == vision_suppress_token_ids(policy[1]) == sorted(
        tok.convert_tokens_to_ids(VISION_TOKENS))  # fmt: skip
    assert (kwargs["max_new_tokens"], kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (
        24,
        0.7,
        0.9,
        5,
    )
    assert kwargs["do_sample"] is True and kwargs["repetition_penalty"] == 1.0
    greedy = generation_kwargs(policy[1], max_new_tokens=8, do_sample=False)
    assert greedy["do_sample"] is False and greedy["temperature"] is None
    with pytest.raises(ConfigError, match="temperature"):
        generation_kwargs(policy[1], max_new_tokens=8, temperature=0.0)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        generation_kwargs(policy[1], max_new_tokens=0)


def test_load_policy_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        load_policy(tmp_path / "nope")
    with pytest.raises(ConfigError, match="dtype"):
        load_policy(tmp_path, dtype="int3")


def _generate(
    policy: tuple, records: list[dict], options: dict, video: VideoConfig, mode: str, sample: bool
) -> list[str]:
    model, processor = policy
    batch = build_inputs(processor, _conversations(records, options, video, mode))
    kwargs = generation_kwargs(processor, max_new_tokens=48, temperature=1.0, do_sample=sample)
    with torch.no_grad():
        out = model.generate(**batch, **kwargs)
    return processor.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize(("mode", "sample"), [(THINK, True), (NO_THINK, True), (THINK, False)])
def test_warm_start_gives_well_formed_answers_at_chance(
    policy: tuple, eval_set: tuple, mode: str, sample: bool
) -> None:
    assert_answers_in_format_at_chance(policy, eval_set, mode, sample)


def assert_answers_in_format_at_chance(policy: tuple, eval_set: tuple, mode: str, sample: bool) -> None:
    """What a warm-started tiny model must do (each family's tiny model is checked with it)."""
    records, options, video = eval_set
    torch.manual_seed(1)
    completions = _generate(policy, records, options, video, mode, sample)
    format_rate = sum(format_reward(c, mode) for c in completions) / len(completions)
    accuracy = sum(
        accuracy_reward(c, r["letter"], options) for c, r in zip(completions, records, strict=True)
    ) / len(records)
    assert format_rate >= 0.9, completions[:4]
    # Letters were random in the warm start: GRPO must start with nothing to exploit yet.
    assert 0.1 <= accuracy <= 0.45, (accuracy, completions[:4])
