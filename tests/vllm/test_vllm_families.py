"""Each family's vLLM side: its architecture is checked before an engine starts, and its patches
make vLLM's model class place M-RoPE positions as transformers does."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from trainer.core.errors import ConfigError
from trainer.model.families import FAMILIES
from trainer.model.families.qwen_mrope import transformers_mrope_positions
from trainer.rollout.vllm_engine import check_servable

pytestmark = pytest.mark.vllm

VLLM_CLASSES = {
    "qwen2_5_vl": ("vllm.model_executor.models.qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"),
    "qwen2_vl": ("vllm.model_executor.models.qwen2_vl", "Qwen2VLForConditionalGeneration"),
}


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_prepare_vllm_patches_the_familys_own_class(model_type: str) -> None:
    family = FAMILIES[model_type]
    module, name = VLLM_CLASSES[model_type]
    cls = getattr(importlib.import_module(module), name)
    assert cls.__name__ == family.vllm_architecture
    family.prepare_vllm()
    assert cls.get_mrope_input_positions is transformers_mrope_positions


def _config(model_type: str, archs: list[str]) -> SimpleNamespace:
    text = SimpleNamespace(hidden_size=256, num_attention_heads=4)
    return SimpleNamespace(model_type=model_type, architectures=archs, text_config=text)


def test_check_servable_names_the_family_and_refuses_the_rest() -> None:
    for family in FAMILIES.values():
        assert check_servable(_config(family.model_type, [family.vllm_architecture]), on_cuda=False) is family
    with pytest.raises(ConfigError, match="architectures \\['LlavaForConditionalGeneration'\\]"):
        check_servable(_config("qwen2_vl", ["LlavaForConditionalGeneration"]), on_cuda=False)
    with pytest.raises(ConfigError, match="model_type 'llava' is not supported"):
        check_servable(_config("llava", ["LlavaForConditionalGeneration"]), on_cuda=False)
