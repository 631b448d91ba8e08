"""Each family's vLLM side: its architecture is checked before an engine starts, and vLLM's model
class places M-RoPE positions as transformers does (patched where it does not by itself)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
import torch

from tests.helpers.records import video_record
from trainer.core.errors import ConfigError
from trainer.core.video_config import VideoConfig
from trainer.model.families import FAMILIES
from trainer.model.families.qwen_mrope import transformers_mrope_positions
from trainer.rollout.vllm_engine import check_servable

pytestmark = pytest.mark.vllm

# model_type -> (vLLM module, class, whose get_mrope_input_positions it has after prepare_vllm:
# "transformers" (patched: trainer.model.families.qwen_mrope) or "vllm" (its own, already the same).
VLLM_CLASSES = {
    "qwen2_5_vl": (
        "vllm.model_executor.models.qwen2_5_vl",
        "Qwen2_5_VLForConditionalGeneration",
        "transformers",
    ),
    "qwen2_vl": ("vllm.model_executor.models.qwen2_vl", "Qwen2VLForConditionalGeneration", "transformers"),
    # Per frame, text after a frame continues at its start + max(h, w) on both sides
    # (test_qwen3_positions_in_vllm_are_transformers).
    "qwen3_vl": ("vllm.model_executor.models.qwen3_vl", "Qwen3VLForConditionalGeneration", "vllm"),
    "qwen3_vl_moe": ("vllm.model_executor.models.qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration", "vllm"),
    # Qwen3-VL's classes underneath (test_qwen3_positions_in_vllm_are_transformers).
    "qwen3_5": ("vllm.model_executor.models.qwen3_5", "Qwen3_5ForConditionalGeneration", "vllm"),
    "qwen3_5_moe": ("vllm.model_executor.models.qwen3_5", "Qwen3_5MoeForConditionalGeneration", "vllm"),
}


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_prepare_vllm_leaves_the_familys_class_placing_positions_as_transformers(model_type: str) -> None:
    if model_type not in VLLM_CLASSES:
        pytest.fail(f"{model_type}: add its vLLM class and whose positions it uses to VLLM_CLASSES")
    family = FAMILIES[model_type]
    module, name, positions = VLLM_CLASSES[model_type]
    cls = getattr(importlib.import_module(module), name)
    assert cls.__name__ == family.vllm_architecture
    family.prepare_vllm()
    if positions == "transformers":
        assert cls.get_mrope_input_positions is transformers_mrope_positions
    else:
        assert cls.get_mrope_input_positions.__module__ == "vllm.model_executor.models.qwen3_vl"


@pytest.mark.parametrize(
    ("model_type", "model_dir"), [("qwen3_vl", "vllm_qwen3_vl_dir"), ("qwen3_5", "vllm_qwen3_5_dir")]
)
def test_qwen3_positions_in_vllm_are_transformers(
    model_type: str, model_dir: str, synthetic_dir, request: pytest.FixtureRequest
) -> None:
    """vLLM's own Qwen3-VL positions of a prompt (one grid per frame, between timestamps) equal
    transformers' get_rope_index, for Qwen3-VL and for Qwen3.5 (whose vLLM class is Qwen3-VL's)."""
    from vllm.model_executor.models.qwen3_vl import Qwen3VLForConditionalGeneration

    from trainer.model.loading import load_policy
    from trainer.rollout.hf import build_prompt_batch

    model, processor = load_policy(request.getfixturevalue(model_dir))
    records = [
        video_record("a", synthetic_dir / "videos" / "m_0001.mp4", "Which way does the square move?"),
        video_record("b", synthetic_dir / "videos" / "m_0002.mp4", "Where?", mode="no_think"),
    ]
    video = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
    p = build_prompt_batch(processor, records, video).inputs
    hf, _ = model.model.get_rope_index(
        p["input_ids"], p["mm_token_type_ids"], None, p["video_grid_thw"], attention_mask=p["attention_mask"]
    )
    prompts = FAMILIES[model_type].vllm_prompts(processor, p)
    for row in range(len(records)):
        real = p["attention_mask"][row].bool()
        ids = p["input_ids"][row][real].tolist()
        # vLLM's placeholder starts where the collapsed prompt has its one <|video_pad|>.
        offset = prompts[row]["prompt_token_ids"].index(model.config.video_token_id)
        feature = SimpleNamespace(
            modality="video",
            mm_position=SimpleNamespace(offset=offset),
            data={"video_grid_thw": SimpleNamespace(data=p["video_grid_thw"][row])},
        )
        positions, delta = Qwen3VLForConditionalGeneration._get_mrope_input_positions(
            ids, [feature], model.config
        )
        assert torch.equal(positions, hf[:, row, real].to(positions.dtype)), row
        assert delta == int(hf[:, row, real].max()) + 1 - len(ids)


def _config(model_type: str, archs: list[str], **text: object) -> SimpleNamespace:
    text_config = SimpleNamespace(hidden_size=256, num_attention_heads=4, **text)
    return SimpleNamespace(model_type=model_type, architectures=archs, text_config=text_config)


def test_check_servable_names_the_family_and_refuses_the_rest() -> None:
    for family in FAMILIES.values():
        assert check_servable(_config(family.model_type, [family.vllm_architecture]), on_cuda=False) is family
    with pytest.raises(ConfigError, match="architectures \\['LlavaForConditionalGeneration'\\]"):
        check_servable(_config("qwen2_vl", ["LlavaForConditionalGeneration"]), on_cuda=False)
    with pytest.raises(ConfigError, match="model_type 'llava' is not supported"):
        check_servable(_config("llava", ["LlavaForConditionalGeneration"]), on_cuda=False)


def _qwen3_5(linear_head_dim: int) -> SimpleNamespace:
    return _config(
        "qwen3_5", ["Qwen3_5ForConditionalGeneration"], head_dim=32,
        layer_types=["linear_attention", "full_attention"],
        linear_key_head_dim=linear_head_dim, linear_value_head_dim=linear_head_dim,
    )  # fmt: skip


def test_check_servable_refuses_qwen3_5_where_vllms_cpu_kernels_fail_and_allows_cuda() -> None:
    # The embedded tiny Qwen3.5's linear-attention heads of 16: vLLM's CPU kernel fails at the first
    # prefill ("chunk_gated_delta_rule_cpu: expect head_dim to be multiples of 32.").
    with pytest.raises(ConfigError, match="no key/value head size 16/16 .*tiny-qwen3.5-hd64"):
        check_servable(_qwen3_5(16), on_cuda=False, dtype="bfloat16")
    # float32: "AssertionError: CPU GDN attention requires BF16."
    with pytest.raises(ConfigError, match="bfloat16 only .* would be float32: set bf16: true"):
        check_servable(_qwen3_5(64), on_cuda=False, dtype="float32")
    assert check_servable(_qwen3_5(64), on_cuda=False, dtype="bfloat16").model_type == "qwen3_5"
    assert check_servable(_qwen3_5(64), on_cuda=False).model_type == "qwen3_5"  # dtype not known yet
    for dtype in ("float32", "bfloat16"):
        assert check_servable(_qwen3_5(16), on_cuda=True, dtype=dtype).model_type == "qwen3_5"


def test_check_servable_on_the_tiny_qwen3_5s(vllm_qwen3_5_dir) -> None:
    from transformers import AutoConfig

    from trainer.core.paths import TINY_QWEN3_5_DIR

    with pytest.raises(ConfigError, match="16/16"):
        check_servable(AutoConfig.from_pretrained(TINY_QWEN3_5_DIR), on_cuda=False, dtype="bfloat16")
    variant = AutoConfig.from_pretrained(vllm_qwen3_5_dir)
    assert check_servable(variant, on_cuda=False, dtype="bfloat16").model_type == "qwen3_5"
    with pytest.raises(ConfigError, match="bfloat16 only"):
        check_servable(variant, on_cuda=False, dtype="float32")
