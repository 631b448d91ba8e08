"""The embedded tiny Qwen3.5 (assets/tiny-qwen3.5) through the model seam: a hybrid of Gated
DeltaNet linear attention and full attention, a chat template that thinks by default, its own
tokenizer class; the shared-prefix path (conv and recurrent states of the prompt expanded G times,
read-only) against the per-sample path; rollouts decoded from the expanded hybrid cache; LoRA on the
linear-attention projections.

Tolerances: the per-sample path runs prompt + completion through one chunked delta rule, the shared
path runs the prompt, then the completion from the prompt's recurrent state. The same sums in
another order: measured on the tiny model (fp32), log-probs differ by <= 6e-5 (of values ~ -6) and
every gradient by <= 2.2e-4 relative (the decay parameters ``A_log`` and ``dt_bias``, whose
gradients sum many cancelling terms; against an fp64 per-sample reference the fp32 per-sample path
is itself 4.4e-5 off there, every other tensor ~5e-6). The bounds below leave 4-5x margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.exactness import assert_tensors_close, shared_prefix_calls
from tests.model.test_shared_prefix import fresh_policy, loss_and_grads, prompt_batch, random_rollout
from tests.model.test_tiny_model import load_eval_set
from trainer.core.config import ModelConfig
from trainer.core.errors import ConfigError
from trainer.core.paths import TINY_QWEN3_5_DIR
from trainer.core.video_config import VideoConfig
from trainer.data.prompts import NO_THINK, THINK
from trainer.model.families import FAMILIES, family_of_model, family_of_path
from trainer.model.loading import generation_kwargs, load_policy
from trainer.model.trainable import lora_targets
from trainer.rollout.hf import build_prompt_batch, generate_rollouts
from trainer.score.rewards import accuracy_reward, format_reward
from trainer.update.logprobs import completion_logprobs

QWEN3_5 = FAMILIES["qwen3_5"]
VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
IMAGE = VideoConfig(fps=8.0, max_frames=8, min_pixels=32768, max_pixels=32768)
LOGP_ATOL = 3e-4
GRAD_REL = 1e-3


@pytest.fixture(scope="module")
def tiny_qwen3_5_dir() -> Path:
    if not (TINY_QWEN3_5_DIR / "config.json").exists():
        pytest.fail(
            f"embedded tiny Qwen3.5 missing at {TINY_QWEN3_5_DIR}: "
            "run scripts/build_tiny_model.py --family qwen3_5"
        )
    return TINY_QWEN3_5_DIR


@pytest.fixture(scope="module")
def policy(tiny_qwen3_5_dir: Path) -> tuple:
    torch.manual_seed(0)
    return load_policy(tiny_qwen3_5_dir)


def test_loads_as_a_hybrid_of_its_family_with_its_own_tokenizer(
    policy: tuple, tiny_qwen3_5_dir: Path
) -> None:
    model, processor = policy
    assert family_of_path(tiny_qwen3_5_dir) is QWEN3_5 and family_of_model(model) is QWEN3_5
    assert type(model).__name__ == "Qwen3_5ForConditionalGeneration"
    assert type(processor.tokenizer).__name__ == "Qwen3_5Tokenizer"
    text = model.config.text_config
    assert text.layer_types == ["linear_attention", "full_attention"]
    assert QWEN3_5.pixels_per_token == 32 * 32 and processor.video_processor.patch_size == 16
    tok = processor.tokenizer
    assert len(tok("<think>x</think>", add_special_tokens=False)["input_ids"]) == 3
    kwargs = generation_kwargs(processor, max_new_tokens=8)
    assert kwargs["eos_token_id"] == tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])


def test_the_template_thinks_by_default_and_no_think_switches_it_off(
    policy: tuple, synthetic_dir: Path
) -> None:
    _, processor = policy
    records, _, video = load_eval_set(synthetic_dir)
    recs = _records(records[:2], video)
    recs[1].mode = NO_THINK
    prompt = build_prompt_batch(processor, recs, video.for_token_size(28 * 28, 32 * 32))
    texts = processor.tokenizer.batch_decode(prompt.inputs["input_ids"])
    assert texts[0].endswith("<|im_start|>assistant\n<think>\n")
    assert texts[1].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # The think prompt opened the block: the completions' texts start inside it.
    assert prompt.openings == ["<think>\n", ""]


def _records(raw: list[dict], video: VideoConfig) -> list:
    from tests.model.test_shared_prefix import Rec

    options = {"A": "left", "B": "right", "C": "up", "D": "down"}
    return [Rec(r["id"], r["question"], options, video=r["video"], answer=r["letter"]) for r in raw]


@pytest.mark.parametrize("mode", [THINK, NO_THINK])
def test_warm_start_answers_in_the_rewarded_format_at_chance(
    policy: tuple, synthetic_dir: Path, mode: str
) -> None:
    """The rewards read the whole answer: in think mode the prompt's "<think>\\n" plus the completion."""
    model, processor = policy
    records, _, video = load_eval_set(synthetic_dir)
    recs = _records(records, video)
    for r in recs:
        r.mode = mode
    prompt = build_prompt_batch(processor, recs, video.for_token_size(28 * 28, 32 * 32))
    torch.manual_seed(1)
    rollout = generate_rollouts(
        model, processor, prompt, 1, generation_kwargs(processor, 48, temperature=1.0)
    )
    formats = [format_reward(t, mode) for t in rollout.texts]
    accuracy = sum(accuracy_reward(t, r.answer, r.options) for t, r in zip(rollout.texts, recs, strict=True))
    assert sum(formats) / len(formats) >= 0.9, rollout.texts[:4]
    assert 0.1 <= accuracy / len(recs) <= 0.45, rollout.texts[:4]
    if mode == THINK:
        assert all(t.startswith("<think>\n") for t in rollout.texts)


def _assert_close_to_per_sample(model, rollout, logp_ref, adv) -> dict:
    logp_a, ent_a, loss_a, grads_a = loss_and_grads(model, rollout, False, logp_ref, adv)
    logp_b, ent_b, loss_b, grads_b = loss_and_grads(model, rollout, True, logp_ref, adv)
    mask = rollout.completion_mask.bool()
    torch.testing.assert_close(logp_b[mask], logp_a[mask], rtol=0, atol=LOGP_ATOL)
    torch.testing.assert_close(ent_b[mask], ent_a[mask], rtol=0, atol=LOGP_ATOL)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    assert_tensors_close(grads_b, grads_a, GRAD_REL)
    return grads_b


@pytest.mark.parametrize(
    ("media", "group_size", "lora"),
    [("video", 1, False), ("video", 8, False), ("image", 4, False), ("text", 4, False), ("video", 4, True)],
)
def test_shared_prefix_matches_the_per_sample_path(
    tiny_qwen3_5_dir: Path, synthetic_dir: Path, media: str, group_size: int, lora: bool
) -> None:
    torch.manual_seed(0)
    model, processor = fresh_policy(tiny_qwen3_5_dir, lora)
    config = IMAGE if media == "image" else VIDEO
    rollout = random_rollout(
        prompt_batch(processor, synthetic_dir, media, config), group_size, seed=group_size
    )
    with torch.no_grad():
        logp_ref = completion_logprobs(model, rollout, 0.7, shared_prefix=False) + 0.05
    adv = torch.linspace(-1.0, 1.0, rollout.completion_ids.shape[0])
    grads = _assert_close_to_per_sample(model, rollout, logp_ref, adv)  # loss_and_grads checks the path
    touched = {n for n, g in grads.items() if g is not None and g.abs().sum() > 0}
    # The linear layer's prompt states carry gradient back into its projections.
    linear = "lora_B" if lora else "weight"  # lora_B starts at zero: lora_A gets no gradient yet
    assert any(".linear_attn.in_proj_qkv." in n and linear in n for n in touched)
    assert any(".linear_attn.in_proj_a." in n for n in touched)


@pytest.mark.parametrize("penalty", [None, 1.3])
def test_greedy_rollouts_from_the_expanded_hybrid_cache_match_per_sample(
    policy: tuple, synthetic_dir: Path, penalty: float | None
) -> None:
    """The lean decode loop, and (with a repetition penalty) ``generate`` continuing the expanded
    cache, give the per-sample tokens."""
    model, processor = policy
    prompt = prompt_batch(processor, synthetic_dir, "video", VIDEO)
    greedy = generation_kwargs(processor, 16, do_sample=False)
    if penalty is not None:
        greedy["repetition_penalty"] = penalty
    one = generate_rollouts(model, processor, prompt, 1, greedy, shared_prefix=False)
    with shared_prefix_calls() as calls:
        four = generate_rollouts(model, processor, prompt, 4, greedy, shared_prefix=True)
    # That path really ran: no silent fall-back to per-sample sampling.
    assert calls == {"generate_from_shared_prefix" if penalty else "decode_shared_prefix": 1}
    assert torch.equal(four.completion_ids, one.completion_ids.repeat_interleave(4, 0))
    assert four.texts == [t for t in one.texts for _ in range(4)]


def test_lora_targets_include_the_linear_attention_projections(policy: tuple) -> None:
    default = ModelConfig(model_name_or_path="x", lora_enable=True)
    targets = lora_targets(default, QWEN3_5)
    assert {"in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj", "q_proj"} <= set(targets)
    without = ModelConfig(model_name_or_path="x", lora_enable=True, lora_target_modules="q_proj,v_proj")
    with pytest.raises(ConfigError, match="in_proj_qkv.*linear-attention"):
        lora_targets(without, QWEN3_5)
    # Other families keep the list as written.
    assert lora_targets(without, FAMILIES["qwen3_vl"]) == ["q_proj", "v_proj"]
