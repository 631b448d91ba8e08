"""The decode cache returns exactly what a fresh decode gives, and evicts least recently used."""

from __future__ import annotations

import torch
from transformers import AutoProcessor

from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.prompts import chat_messages
from trainer.data.video import DecodeCache

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)


def _conv(path: str) -> list[dict]:
    messages = chat_messages("Which way?", {"A": "left", "B": "right"})
    messages[0]["content"].insert(0, VIDEO.video_element(path))
    return messages


def test_cached_inputs_equal_fresh_ones_even_after_the_processor_ran(tiny_model_dir, synthetic_dir) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    convs = [_conv(str(synthetic_dir / "videos" / f"m_000{i}.mp4")) for i in (1, 2)]
    cache = DecodeCache(max_mb=64)
    fresh = build_inputs(processor, convs)
    first = build_inputs(processor, convs, cache=cache)
    second = build_inputs(processor, convs, cache=cache)  # served from the cache
    assert (cache.misses, cache.hits) == (2, 2)
    for batch in (first, second):
        assert torch.equal(batch["pixel_values_videos"], fresh["pixel_values_videos"])
        assert torch.equal(batch["input_ids"], fresh["input_ids"])


def test_lru_eviction_by_size() -> None:
    cache = DecodeCache(max_mb=3 / 2**20)  # room for 3 bytes
    cache.put("a", 1, 1)
    cache.put("b", 2, 1)
    cache.put("c", 3, 1)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("d", 4, 1)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("c") == 3 and cache.get("d") == 4
    cache.put("huge", 5, 10)  # larger than the whole cache: not kept
    assert cache.get("huge") is None
