"""The embedded tiny Qwen2-VL (assets/tiny-qwen2-vl), the second model family: it loads as its
family with its own token ids, gives video tokens Qwen2-VL's 3-D rope positions, answers in the
right format at chance accuracy after the format warm start, and the shared-prefix path equals the
per-sample path for it (the smallest of tests/model/test_shared_prefix.py's exactness checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.model.test_shared_prefix import assert_both_paths_agree, fresh_policy, prompt_batch, random_rollout
from tests.model.test_tiny_model import VISION_TOKENS, _conversations, assert_answers_in_format_at_chance
from tests.model.test_tiny_model import eval_set as eval_set  # noqa: F401  (the fixture, reused)
from trainer.core.paths import TINY_QWEN2_VL_DIR
from trainer.data.inputs import build_inputs
from trainer.data.prompts import NO_THINK, THINK
from trainer.model.families import FAMILIES, family_of_model, family_of_path
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import generate_rollouts
from trainer.update.logprobs import completion_logprobs

QWEN2_VL = FAMILIES["qwen2_vl"]


@pytest.fixture(scope="module")
def tiny_qwen2_vl_dir() -> Path:
    if not (TINY_QWEN2_VL_DIR / "config.json").exists():
        pytest.fail(
            f"embedded tiny Qwen2-VL missing at {TINY_QWEN2_VL_DIR}: "
            "run scripts/build_tiny_model.py --family qwen2_vl"
        )
    return TINY_QWEN2_VL_DIR


@pytest.fixture(scope="module")
def policy(tiny_qwen2_vl_dir: Path) -> tuple:
    torch.manual_seed(0)
    return load_policy(tiny_qwen2_vl_dir)


def test_loads_as_its_family_with_its_own_token_ids(policy: tuple, tiny_qwen2_vl_dir: Path) -> None:
    model, processor = policy
    tok = processor.tokenizer
    assert family_of_path(tiny_qwen2_vl_dir) is QWEN2_VL
    assert family_of_model(model) is QWEN2_VL
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2VLProcessor"
    cfg = model.config
    assert cfg.model_type == "qwen2_vl"
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert (cfg.text_config.eos_token_id, cfg.text_config.pad_token_id, cfg.text_config.bos_token_id) == (
        im_end, eot, eot)  # fmt: skip
    assert model.generation_config.eos_token_id == [im_end, eot]
    assert model.generation_config.suppress_tokens == sorted(tok.convert_tokens_to_ids(VISION_TOKENS))
    kwargs = generation_kwargs(processor, max_new_tokens=8)
    assert kwargs["eos_token_id"] == [im_end, eot] and kwargs["pad_token_id"] == eot
    assert kwargs["suppress_tokens"] == sorted(tok.convert_tokens_to_ids(VISION_TOKENS))
    assert cfg.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    assert cfg.text_config.rope_parameters["rope_theta"] == 100.0
    assert cfg.text_config.vocab_size >= len(tok) and len(tok) < 2048
    vision = cfg.vision_config
    assert (vision.embed_dim, vision.depth, vision.num_heads, vision.hidden_size) == (64, 2, 4, 64)
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    params = sum(p.numel() for p in model.parameters())
    assert 300_000 < params < 600_000
    size = sum(p.stat().st_size for p in tiny_qwen2_vl_dir.rglob("*") if p.is_file())
    assert size < 20e6


def test_video_tokens_get_qwen2_vl_3d_rope_positions(
    policy: tuple, eval_set: tuple, synthetic_dir: Path
) -> None:
    model, processor = policy
    records, options, video = eval_set
    batch = build_inputs(processor, _conversations(records[:2], options, video, THINK))
    # Qwen2-VL's processor gives no frame timing: its rope index ignores it.
    assert "second_per_grid_ts" not in batch
    is_video = batch["input_ids"] == model.config.video_token_id
    meta = json.loads((synthetic_dir / "dataset.json").read_text())
    assert is_video.sum(dim=1).tolist() == [meta["video_tokens_per_prompt"]] * 2 == [16, 16]
    positions = QWEN2_VL.rope_index(model, batch, "cpu")
    t, h, w = (positions[axis][0][is_video[0]] - positions[axis][0][is_video[0]].min() for axis in range(3))
    # 4 temporal steps x 2 x 2 cells, in (t, h, w) order: time advances 1 per temporal patch.
    assert t.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert h.tolist() == [0, 0, 1, 1] * 4
    assert w.tolist() == [0, 1, 0, 1] * 4


@pytest.mark.parametrize(("mode", "sample"), [(THINK, True), (NO_THINK, False)])
def test_warm_start_gives_well_formed_answers_at_chance(
    policy: tuple, eval_set: tuple, mode: str, sample: bool
) -> None:
    assert_answers_in_format_at_chance(policy, eval_set, mode, sample)


def test_logprobs_loss_and_every_gradient_match_the_per_sample_path(
    tiny_qwen2_vl_dir: Path, synthetic_dir: Path
) -> None:
    torch.manual_seed(0)
    model, processor = fresh_policy(tiny_qwen2_vl_dir)
    rollout = random_rollout(prompt_batch(processor, synthetic_dir, "video"), 4, seed=4)
    with torch.no_grad():
        logp_ref = completion_logprobs(model, rollout, 0.7, shared_prefix=False) + 0.05
    adv = torch.linspace(-1.0, 1.0, rollout.completion_ids.shape[0])

    grads_b = assert_both_paths_agree(model, rollout, logp_ref, adv)
    touched = {n for n, g in grads_b.items() if g is not None and g.abs().sum() > 0}
    assert any(".visual.blocks." in n for n in touched) and any(".visual.merger." in n for n in touched)


def test_greedy_rollouts_are_identical_on_both_paths(policy: tuple, synthetic_dir: Path) -> None:
    model, processor = policy
    prompt = prompt_batch(processor, synthetic_dir, "video")
    greedy = generation_kwargs(processor, 16, do_sample=False)
    one = generate_rollouts(model, processor, prompt, 1, greedy, shared_prefix=False)
    four = generate_rollouts(model, processor, prompt, 4, greedy, shared_prefix=True)
    assert torch.equal(four.completion_ids, one.completion_ids.repeat_interleave(4, 0))
    assert four.texts == [t for t in one.texts for _ in range(4)]
    assert four.vision_items == one.vision_items == prompt.size
