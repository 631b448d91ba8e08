"""The memory of a colocated vLLM engine: its CPU KV cache sized by what the run's sequences need
(not 0.3 of the host), and counted in the pre-flight's estimate."""

from __future__ import annotations

import doctest

import pytest

from trainer.core.config import build_config
from trainer.core.paths import TINY_MODEL_DIR
from trainer.rollout import engine_memory
from trainer.run.preflight_cost import cost_of, memory_text
from trainer.step import cost
from trainer.step.cost import GIB, ModelShape

MIB = 2**20


@pytest.mark.parametrize("module", [engine_memory, cost])
def test_docstring_examples(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_the_tiny_models_cpu_cache_is_what_its_sequences_need() -> None:
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(TINY_MODEL_DIR).text_config
    layers, kv_heads, head_dim, positions = engine_memory.kv_counts(text)
    assert (layers, kv_heads, head_dim, positions) == (2, 2, 16, 4096)  # head_dim = 64 hidden / 4 heads
    per_token = engine_memory.kv_bytes_per_token(layers, kv_heads, head_dim, 4)
    assert per_token == 2 * 2 * 2 * 16 * 4
    # 16 prompts x G=4 at the full 4096-token context, x1.25: 160 MiB, not 0.3 x 24 GiB = 7.2 GiB.
    got = engine_memory.cpu_kv_cache_bytes(per_token, positions, 64, 0.3, 24 * GIB)
    assert got == 160 * MIB
    # A fraction below the need is the ceiling; a tiny need gets the floor.
    assert engine_memory.cpu_kv_cache_bytes(per_token, positions, 64, 0.001, 24 * GIB) == int(
        0.001 * 24 * GIB
    )
    assert engine_memory.cpu_kv_cache_bytes(per_token, 16, 1, 0.3, 24 * GIB) == engine_memory.KV_FLOOR_BYTES


def test_the_estimate_counts_the_engine_with_rollout_backend_vllm() -> None:
    shape = ModelShape(1_000_000, 1_000_000, 64, 2, 1000, kv_bytes_per_token_fp32=512, max_positions=4096)
    values = {"per_device_train_batch_size": 16, "grpo_sample_size": 4, "generation_max_length": 32}
    hf = cost_of(build_config(values), shape, 100.0, 50.0, [])
    vllm = cost_of(build_config(values | {"rollout_backend": "vllm"}), shape, 100.0, 50.0, [])
    assert hf.memory.engine_gib == 0.0 and "vLLM engine" not in memory_text(hf)
    if vllm.device == "CPU":
        # Its own float32 weight copy plus the 160 MiB cache above.
        assert vllm.memory.engine_gib == pytest.approx((4_000_000 + 160 * MIB) / GIB)
    assert vllm.memory.total_gib == pytest.approx(hf.memory.total_gib + vllm.memory.engine_gib)
    assert f"vLLM engine {vllm.memory.engine_gib * 1024:.1f} MiB" in memory_text(vllm)
