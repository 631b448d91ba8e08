"""Sampling a group of completions per question with the policy (the "rollout" half of GRPO).

Each prompt's video is decoded and preprocessed once, and the outputs come back grouped per
prompt (p0s0, p0s1, ..., p1s0). Two ways to sample, with the same tokens (greedy) or the same
distribution (sampling):

- shared prefix (default): the vision tower and the prompt prefill run once per question; the
  prompt's KV cache is then expanded to the G rows and all G samples decode from it, with the
  3-D rope positions the one-shot ``generate`` would use: in the lean loop of
  :mod:`trainer.rollout.decode`, or by ``generate`` continuing the cache for settings that loop leaves
  to it (``synced_gpus``, a repetition penalty);
- per sample: ``generate(num_return_sequences=G)`` prefills G copies of every prompt (transformers
  encodes the pixels once and repeats the features).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs, opened_block, render_prompts
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.data.prompts import chat_messages
from trainer.data.video import DecodeCache
from trainer.model import hybrid_cache, prefix
from trainer.model.counts import count_forwards
from trainer.model.families import unwrap
from trainer.rollout.decode import decode_shared_prefix, generation_positions, lean_decoding_supported

VideoTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PromptBatch:
    """B questions, tokenised and with their videos preprocessed, left-padded to one length P."""

    records: list[Any]  # MCQRecord (B,)
    inputs: dict[str, torch.Tensor]  # input_ids (B, P), attention_mask, mm_token_type_ids, vision tensors
    # (B,) what each prompt already wrote of the answer (an open "<think>\n" on a template that
    # thinks by default; trainer.data.inputs.opened_block): completions' texts start with it.
    openings: list[str] = field(default_factory=list)
    # Rope positions (3, B, P), computed on first use: the rollout, reference and policy forwards
    # all need them and ``get_rope_index`` is ~1 ms of Python per call.
    _positions: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def positions(self, model: Any, device: torch.device | str) -> torch.Tensor:
        """The prompts' rope positions (3, B, P) on ``device`` (``prefix.prompt_positions``)."""
        if self._positions is None or self._positions.device != torch.device(device):
            self._positions = prefix.prompt_positions(model, self.inputs, device)
        return self._positions

    @property
    def size(self) -> int:
        return len(self.records)

    @property
    def length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


@dataclass
class RolloutBatch:
    """G completions for each of B prompts, grouped per prompt: row b*G + g."""

    prompt: PromptBatch
    group_size: int
    completion_ids: torch.Tensor  # (B*G, T), padded with pad_token_id after EOS
    completion_mask: torch.Tensor  # (B*G, T), 1 for generated tokens up to and including EOS
    texts: list[str]  # (B*G,) decoded completions
    seconds: float
    # Measured while sampling: prompt tokens the language model prefilled (rows x tokens, padding
    # included) and images/videos the vision tower encoded.
    prefill_tokens: int = 0
    vision_items: int = 0
    # (B*G, T) log-probs the sampler reported for its tokens, when it is not the policy itself
    # (vLLM: trainer.rollout.vllm_engine); None for transformers' generate.
    sampler_logprobs: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)


def conversation(record: Any, video_cfg: VideoConfig) -> list[dict]:
    """The chat messages for one MCQ record, with the video knobs in its video element."""
    messages = chat_messages(
        record.question,
        record.options,
        record.mode,
        problem_type=getattr(record, "problem_type", MULTIPLE_CHOICE),
    )
    media = video_cfg.video_element(record.video) if record.video else video_cfg.image_element(record.image)
    messages[0]["content"].insert(0, media)
    return messages


def build_prompt_batch(
    processor: Any,
    records: Sequence[Any],
    video_cfg: VideoConfig,
    video_transform: VideoTransform | None = None,
    cache: DecodeCache | None = None,
) -> PromptBatch:
    """Tokenise B records and decode each video once. ``video_transform`` maps a decoded video
    (T, C, H, W) to another (used by T-GRPO to shuffle frames)."""
    convs = [conversation(r, video_cfg) for r in records]
    modes = [r.mode for r in records]
    texts = render_prompts(processor, convs, modes)
    inputs = build_inputs(processor, convs, video_transform=video_transform, cache=cache, texts=texts)
    openings = [opened_block(text) for text in texts]
    return PromptBatch(records=list(records), inputs=dict(inputs), openings=openings)


def completion_texts(prompt: PromptBatch, group_size: int, decoded: Sequence[str]) -> list[str]:
    """Row b*G + g's answer as the rewards read it: what its prompt opened, then what it decoded."""
    openings = prompt.openings or [""] * prompt.size
    return [(openings[i // group_size] + text).strip() for i, text in enumerate(decoded)]


def completion_mask(completion_ids: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """1 for every token up to and including the first EOS of each row, 0 after it.

    >>> completion_mask(torch.tensor([[5, 9, 7, 0], [5, 6, 6, 6]]), [9]).tolist()
    [[1, 1, 0, 0], [1, 1, 1, 1]]
    """
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos_ids), device=completion_ids.device))
    # Tokens strictly after the first EOS: a running count of EOS seen before this position.
    seen_before = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
    return (seen_before == 0).long()


@torch.no_grad()
def generate_rollouts(
    model: Any,
    processor: Any,
    prompt: PromptBatch,
    group_size: int,
    generation_kwargs: dict[str, Any],
    shared_prefix: bool = True,
) -> RolloutBatch:
    """Sample ``group_size`` completions per prompt. ``generation_kwargs`` come from
    ``trainer.model.loading.generation_kwargs`` (max_new_tokens, sampling, eos/pad ids, suppressed
    vision tokens). ``shared_prefix``: prefill each prompt once (falls back to per-sample, with a
    warning, where the attention backend cannot take it)."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    shared = prefix.use_shared_prefix(model, shared_prefix)
    try:
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in prompt.inputs.items()}
        lean = shared and lean_decoding_supported(generation_kwargs, model)
        with count_forwards(model) as counts:
            if lean:
                out = decode_shared_prefix(model, inputs, group_size, generation_kwargs)
            elif shared:
                out = generate_from_shared_prefix(model, inputs, group_size, generation_kwargs)
            else:
                out = model.generate(**inputs, num_return_sequences=group_size, **generation_kwargs)
    finally:
        model.train(was_training)
    # The prompt's forwards come first: one prefill per sample and in the lean decode loop (whose
    # decode steps call the decoder layers, not the counted language model); the shared prefill and
    # the first generate forward (each row's last prompt token) on the generate-continuation path.
    prefill_tokens = sum(counts.lm_forwards[: 2 if shared and not lean else 1])
    completion_ids = out[:, prompt.length :]
    eos = generation_kwargs.get("eos_token_id")
    eos_ids = eos if isinstance(eos, list | tuple) else [eos]
    mask = completion_mask(completion_ids, eos_ids)
    pad_id = generation_kwargs.get("pad_token_id", 0)
    completion_ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids, pad_id))
    texts = processor.tokenizer.batch_decode(
        [ids[m.bool()] for ids, m in zip(completion_ids, mask, strict=True)], skip_special_tokens=True
    )
    return RolloutBatch(
        prompt=prompt,
        group_size=group_size,
        completion_ids=completion_ids.cpu(),
        completion_mask=mask.cpu(),
        texts=completion_texts(prompt, group_size, texts),
        seconds=time.perf_counter() - start,
        prefill_tokens=prefill_tokens,
        vision_items=counts.vision_items,
    )


def generate_from_shared_prefix(
    model: Any, inputs: dict[str, torch.Tensor], group_size: int, generation_kwargs: dict[str, Any]
) -> torch.Tensor:
    """``generate`` output (B*G, P + new) with each prompt prefilled once, then decoded G times.

    The first P-1 prompt tokens (all the vision tokens) are prefilled for the B prompts; the cache
    is repeated to B*G rows and ``generate`` continues from it (transformers' cache-continuation
    path), feeding each row's last prompt token and decoding. The 4-row position ids (text, then
    3-D rope) are the ones ``generate`` computes for the whole prompt, passed explicitly so the
    continued rows use exactly the positions of the one-shot call.
    """
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    lm = unwrap(model)
    # transformers' own positions for generation (text row + 3-D rope rows): (4, B, P).
    positions = generation_positions(model, inputs)
    vision = {key: inputs[key] for key in prefix.VISION_KEYS if key in inputs}
    cache = DynamicCache(config=lm.config.get_text_config())
    cache_arg = prefix.cache_kwarg(model)
    model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions[..., :-1],
        **{cache_arg: cache},
        use_cache=True,
        logits_to_keep=1,
        **vision,
    )
    hybrid_cache.repeat_rows(cache, group_size)
    return model.generate(
        input_ids=ids.repeat_interleave(group_size, 0),
        attention_mask=mask.repeat_interleave(group_size, 0),
        position_ids=positions.repeat_interleave(group_size, 1),
        **{cache_arg: cache},
        **generation_kwargs,
    )


def shuffled_frames(generator: torch.Generator) -> VideoTransform:
    """A video transform that permutes frames in time (T-GRPO's contrast input)."""

    def transform(video: torch.Tensor) -> torch.Tensor:
        order = torch.randperm(video.shape[0], generator=generator)
        return video[order]

    return transform
