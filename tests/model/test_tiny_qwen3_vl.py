"""The embedded tiny Qwen3-VL (assets/tiny-qwen3-vl) through the model seam: it loads as its family
with its own token ids and 16 px patches, the processor writes the frame timestamps our frame
sampling implies, video tokens get Qwen3-VL's per-frame rope positions, DeepStack features reach
the language model on every path, the warm start answers in format at chance, and the
shared-prefix path equals the per-sample path (video, image, text; G 1/4/8; LoRA)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.model.test_shared_prefix import assert_both_paths_agree, fresh_policy, prompt_batch, random_rollout
from tests.model.test_tiny_model import (
    VISION_TOKENS,
    _conversations,
    assert_answers_in_format_at_chance,
    load_eval_set,
)
from trainer.core.paths import TINY_QWEN3_VL_DIR
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.prompts import NO_THINK, THINK
from trainer.model.families import FAMILIES, family_of_model, family_of_path
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import generate_rollouts
from trainer.update.logprobs import completion_logprobs, sequence_inputs, shared_vision_outputs

QWEN3_VL = FAMILIES["qwen3_vl"]
# The synthetic clips at 64 x 64 px: 2 x 2 visual tokens of 32 px per frame pair.
VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
IMAGE = VideoConfig(fps=8.0, max_frames=8, min_pixels=32768, max_pixels=32768)


@pytest.fixture(scope="module")
def tiny_qwen3_vl_dir() -> Path:
    if not (TINY_QWEN3_VL_DIR / "config.json").exists():
        pytest.fail(
            f"embedded tiny Qwen3-VL missing at {TINY_QWEN3_VL_DIR}: "
            "run scripts/build_tiny_model.py --family qwen3_vl"
        )
    return TINY_QWEN3_VL_DIR


@pytest.fixture(scope="module")
def policy(tiny_qwen3_vl_dir: Path) -> tuple:
    torch.manual_seed(0)
    return load_policy(tiny_qwen3_vl_dir)


@pytest.fixture(scope="module")
def eval_set(synthetic_dir: Path) -> tuple:
    """The synthetic held-out records with the pixel budgets scaled to 32 px tokens."""
    records, options, video = load_eval_set(synthetic_dir)
    return records, options, video.for_token_size(28 * 28, QWEN3_VL.pixels_per_token)


def test_loads_as_its_family_with_its_own_token_ids(policy: tuple, tiny_qwen3_vl_dir: Path) -> None:
    model, processor = policy
    tok = processor.tokenizer
    assert family_of_path(tiny_qwen3_vl_dir) is QWEN3_VL and family_of_model(model) is QWEN3_VL
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen3VLVideoProcessor"
    cfg = model.config
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert (cfg.text_config.eos_token_id, cfg.text_config.pad_token_id) == (im_end, eot)
    kwargs = generation_kwargs(processor, max_new_tokens=8)
    assert kwargs["eos_token_id"] == [im_end, eot]
    assert kwargs["suppress_tokens"] == sorted(tok.convert_tokens_to_ids(VISION_TOKENS))
    # Qwen3's thinking tags are single (plain) tokens, as in the real vocabulary.
    assert len(tok("<think>x</think>", add_special_tokens=False)["input_ids"]) == 3
    vision = cfg.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (16, 2, 2)
    assert processor.video_processor.patch_size == processor.image_processor.patch_size == 16
    assert QWEN3_VL.pixels_per_token == 32 * 32
    assert list(vision.deepstack_visual_indexes) == [0]
    assert cfg.text_config.rope_parameters["mrope_interleaved"] is True
    # The DeepStack mergers are mergers: tune_mm_mlp trains them, LoRA saves them.
    assert len(QWEN3_VL.merger_modules(model)) == 2
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 1_000_000


@pytest.mark.parametrize(
    ("fps", "stamps"),
    [
        # All 8 frames of the 8 fps clip: pairs (0,1) (2,3) (4,5) (6,7) -> means 0.0625, 0.3125, ... s.
        (8.0, ["0.1", "0.3", "0.6", "0.8"]),
        # 4 fps samples 4 frames at indices 0, 2, 5, 7: pairs -> (0+2)/2/8 = 0.125, (5+7)/2/8 = 0.75 s.
        (4.0, ["0.1", "0.8"]),
    ],
)
def test_the_prompt_carries_the_timestamps_of_the_sampled_frames(
    policy: tuple, synthetic_dir: Path, fps: float, stamps: list[str]
) -> None:
    _, processor = policy
    video = VideoConfig(fps=fps, max_frames=8, min_pixels=4096, max_pixels=4096)
    element = video.video_element(synthetic_dir / "videos" / "m_0001.mp4")
    batch = build_inputs(processor, [[{"role": "user", "content": [element, {"type": "text", "text": "Q"}]}]])
    prompt = processor.tokenizer.decode(batch["input_ids"][0])
    assert re.findall(r"<([\d.]+) seconds>", prompt) == stamps
    # One <|vision_start|> per frame pair, each with 2 x 2 tokens of 32 px (the frames are 64 x 64).
    assert prompt.count("<|vision_start|>") == len(stamps)
    assert batch["video_grid_thw"].tolist() == [[len(stamps), 4, 4]]
    assert (batch["input_ids"] == processor.video_token_id).sum() == 4 * len(stamps)


def test_video_tokens_get_per_frame_3d_rope_positions(policy: tuple, eval_set: tuple) -> None:
    model, processor = policy
    records, options, video = eval_set
    batch = build_inputs(processor, _conversations(records[:2], options, video, THINK))
    assert "second_per_grid_ts" not in batch  # time is in the text (timestamps), not in the rope
    is_video = batch["input_ids"] == model.config.video_token_id
    assert is_video.sum(dim=1).tolist() == [16, 16]
    positions = QWEN3_VL.rope_index(model, batch, "cpu")
    t, h, w = (positions[axis][0][is_video[0]] for axis in range(3))
    # Each frame pair is its own 1 x 2 x 2 grid after its timestamp text: within a frame t is
    # constant and (h, w) walk the 2 x 2 cells; the next frame starts after the text between.
    assert h.view(4, 4).sub(h.view(4, 4)[:, :1]).tolist() == [[0, 0, 1, 1]] * 4
    assert w.view(4, 4).sub(w.view(4, 4)[:, :1]).tolist() == [[0, 1, 0, 1]] * 4
    frame_t = t.view(4, 4)
    assert (frame_t == frame_t[:, :1]).all() and (frame_t[1:, 0] > frame_t[:-1, 0]).all()


def test_deepstack_features_reach_the_language_model(policy: tuple, synthetic_dir: Path) -> None:
    """The DeepStack features the per-sample path hands the forward change its output: a path that
    dropped them (as the Qwen2-style pooled-only vision outputs would) could not pass the exactness
    tests below."""
    model, processor = policy
    rollout = random_rollout(prompt_batch(processor, synthetic_dir, "video", VIDEO), 2, seed=2)
    vision = shared_vision_outputs(model, rollout, "cpu")["video"]
    assert len(vision.deepstack_features) == 1 and len(vision.deepstack_features[0]) == 4  # 2 prompts x G
    inputs = sequence_inputs(rollout, "cpu")
    with torch.no_grad():
        full = model(**inputs, mm_encoder_outputs={"video": vision}, use_cache=False).logits
        zeroed = type(vision)(
            pooler_output=vision.pooler_output,
            deepstack_features=[tuple(map(torch.zeros_like, layer)) for layer in vision.deepstack_features],
        )
        without = model(**inputs, mm_encoder_outputs={"video": zeroed}, use_cache=False).logits
    assert (full - without).abs().max() > 1e-3


@pytest.mark.parametrize(("mode", "sample"), [(THINK, True), (NO_THINK, False)])
def test_warm_start_gives_well_formed_answers_at_chance(
    policy: tuple, eval_set: tuple, mode: str, sample: bool
) -> None:
    assert_answers_in_format_at_chance(policy, eval_set, mode, sample)


@pytest.mark.parametrize(
    ("media", "group_size", "lora"),
    [("video", 1, False), ("video", 8, False), ("image", 4, False), ("text", 4, False), ("video", 4, True)],
)
def test_logprobs_loss_and_every_gradient_match_the_per_sample_path(
    tiny_qwen3_vl_dir: Path, synthetic_dir: Path, media: str, group_size: int, lora: bool
) -> None:
    torch.manual_seed(0)
    model, processor = fresh_policy(tiny_qwen3_vl_dir, lora)
    config = IMAGE if media == "image" else VIDEO
    prompt = prompt_batch(processor, synthetic_dir, media, config)
    rollout = random_rollout(prompt, group_size, seed=group_size)
    with torch.no_grad():
        logp_ref = completion_logprobs(model, rollout, 0.7, shared_prefix=False) + 0.05
    adv = torch.linspace(-1.0, 1.0, rollout.completion_ids.shape[0])

    grads = assert_both_paths_agree(model, rollout, logp_ref, adv)
    touched = {n for n, g in grads.items() if g is not None and g.abs().sum() > 0}
    if media != "text":
        # The DeepStack mergers' features reach the loss through the shared prompt's cache too.
        assert any(".deepstack_merger_list.0." in n for n in touched)
    if lora:
        assert any("lora_" in n for n in touched)


def test_greedy_rollouts_are_identical_on_both_paths(policy: tuple, synthetic_dir: Path) -> None:
    model, processor = policy
    prompt = prompt_batch(processor, synthetic_dir, "video", VIDEO)
    greedy = generation_kwargs(processor, 16, do_sample=False)
    one = generate_rollouts(model, processor, prompt, 1, greedy, shared_prefix=False)
    four = generate_rollouts(model, processor, prompt, 4, greedy, shared_prefix=True)
    assert torch.equal(four.completion_ids, one.completion_ids.repeat_interleave(4, 0))
    assert four.texts == [t for t in one.texts for _ in range(4)]
