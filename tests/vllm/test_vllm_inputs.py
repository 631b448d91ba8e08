"""What the vLLM sampler is given equals what the training forward sees (no vLLM needed here)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.records import video_record
from trainer.core.video_config import VideoConfig
from trainer.model.families.qwen_mrope import transformers_mrope_positions
from trainer.model.families.qwen_vllm_inputs import PATCHIFY_ONLY as _PATCHIFY_ONLY
from trainer.model.families.qwen_vllm_inputs import collapse_runs as _collapse_runs
from trainer.model.families.qwen_vllm_inputs import (
    collapse_timestamped_video,
    frames_from_patches,
    timestamp_metadata,
)
from trainer.model.loading import load_policy
from trainer.rollout.hf import build_prompt_batch

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)


@pytest.fixture(scope="module")
def prompt_and_policy(tiny_model_dir, synthetic_dir):
    model, processor = load_policy(tiny_model_dir)
    records = [
        video_record("a", synthetic_dir / "videos" / "m_0001.mp4", "Which way does the square move?"),
        video_record("b", synthetic_dir / "videos" / "m_0002.mp4", "Where does it go?"),
    ]
    return build_prompt_batch(processor, records, VIDEO), model, processor


def test_frames_from_patches_give_back_the_same_pixels(prompt_and_policy) -> None:
    prompt, _, processor = prompt_and_policy
    vp = processor.video_processor
    pixels, grid = prompt.inputs["pixel_values_videos"], prompt.inputs["video_grid_thw"]
    frames = frames_from_patches(pixels, grid, vp.patch_size, vp.merge_size, vp.temporal_patch_size)
    assert [tuple(f.shape) for f in frames] == [(8, 3, 56, 56), (8, 3, 56, 56)]
    # What vLLM's processor call does with them: patchify only (frames are already normalised).
    again = vp(videos=frames, do_sample_frames=False, return_tensors="pt", **_PATCHIFY_ONLY)
    assert torch.equal(again["pixel_values_videos"], pixels)
    assert torch.equal(again["video_grid_thw"], grid)


class FakeVLLMModel:
    """What vLLM's ``iter_mm_grid_thw`` yields for a prompt with one video."""

    def __init__(self, grid: tuple) -> None:
        self.grid = grid

    def iter_mm_grid_thw(self, _features):
        yield self.grid


def test_text_positions_follow_transformers(prompt_and_policy) -> None:
    """The positions vLLM is made to use equal transformers' get_rope_index for the same prompt."""
    prompt, model, processor = prompt_and_policy
    p = prompt.inputs
    hf, _ = model.model.get_rope_index(
        p["input_ids"], p["mm_token_type_ids"], None, p["video_grid_thw"],
        second_per_grid_ts=p["second_per_grid_ts"], attention_mask=p["attention_mask"],
    )  # fmt: skip
    video_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    tps = model.config.vision_config.tokens_per_second
    for row in range(prompt.size):
        ids = p["input_ids"][row][p["attention_mask"][row].bool()].tolist()
        t, h, w = p["video_grid_thw"][row].tolist()

        grid = (ids.index(video_id), t, h // 2, w // 2, float(p["second_per_grid_ts"][row]) * tps)
        positions, delta = transformers_mrope_positions(FakeVLLMModel(grid), ids, [])
        expected = hf[:, row, p["attention_mask"][row].bool()]
        assert torch.equal(positions, expected.to(positions.dtype))
        assert delta == int(expected.max()) + 1 - len(ids)


def test_expanded_placeholders_collapse_to_one() -> None:
    assert _collapse_runs([1, 7, 7, 7, 2, 8, 8, 3, 7], (7, 8)) == [1, 7, 2, 8, 3, 7]


@pytest.fixture(scope="module")
def qwen3_prompt(synthetic_dir):
    from trainer.core.paths import TINY_QWEN3_VL_DIR

    _, processor = load_policy(TINY_QWEN3_VL_DIR)
    records = [video_record("a", synthetic_dir / "videos" / "m_0001.mp4", "Which way does the square move?")]
    video = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
    return build_prompt_batch(processor, records, video), processor


def _vllm_expansion(tok, seconds: list[float], per_frame: int, ids: tuple[int, int, int]) -> list[int]:
    """What vLLM 0.32's Qwen3-VL processor puts in place of a video's <|video_pad|>
    (``Qwen3VLMultiModalProcessor.get_video_repl``): each timestamp tokenised on its own."""
    start, video, end = ids
    out: list[int] = []
    for s in seconds:
        out += tok.encode(f"<{s:.1f} seconds>", add_special_tokens=False)
        out += [start] + [video] * per_frame + [end]
    return out


def test_a_qwen3_vl_video_collapses_with_its_timestamps_and_expands_back(qwen3_prompt) -> None:
    prompt, processor = qwen3_prompt
    tok, vp = processor.tokenizer, processor.video_processor
    special = tuple(tok.convert_tokens_to_ids(["<|vision_start|>", "<|video_pad|>", "<|vision_end|>"]))
    ids = prompt.inputs["input_ids"][0][prompt.inputs["attention_mask"][0].bool()].tolist()
    collapsed, seconds = collapse_timestamped_video(ids, tok, special[1], special[0], special[2])
    assert collapsed.count(special[1]) == 1 and seconds == [0.1, 0.3, 0.6, 0.8]
    at = collapsed.index(special[1])
    t, h, w = prompt.inputs["video_grid_thw"][0].tolist()
    again = collapsed[:at] + _vllm_expansion(tok, seconds, h * w // 4, special) + collapsed[at + 1 :]
    assert again == ids
    # The metadata handed to vLLM gives those timestamps back by the processor's own rule.
    meta = timestamp_metadata(seconds, vp.temporal_patch_size)
    printed = processor._calculate_timestamps(meta["frames_indices"], meta["fps"], vp.temporal_patch_size)
    assert [f"{s:.1f}" for s in printed] == ["0.1", "0.3", "0.6", "0.8"] and len(printed) == t


def test_a_timestamp_tokenised_with_other_text_is_refused(qwen3_prompt) -> None:
    prompt, processor = qwen3_prompt
    tok = processor.tokenizer
    special = tuple(tok.convert_tokens_to_ids(["<|vision_start|>", "<|video_pad|>", "<|vision_end|>"]))
    ids = prompt.inputs["input_ids"][0][prompt.inputs["attention_mask"][0].bool()].tolist()
    first = tok.encode("<0.1 seconds>", add_special_tokens=False)
    at = ids.index(special[1]) - 1  # the first frame's <|vision_start|>, right after its timestamp
    assert ids[at - len(first) : at] == first
    # The same text in other tokens (one per character), as a merge with the text before would give.
    by_char = [i for c in "<0.1 seconds>" for i in tok.encode(c, add_special_tokens=False)]
    assert by_char != first
    odd = ids[: at - len(first)] + by_char + ids[at:]
    with pytest.raises(ValueError, match="timestamp <0.1 seconds> of video frame 0 is tokenised with"):
        collapse_timestamped_video(odd, tok, special[1], special[0], special[2])
