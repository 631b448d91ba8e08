"""A lean decode loop for shared-prefix rollouts: prefill each prompt once, decode its G samples.

Why not ``generate``: on a small language model a decode step is mostly framework overhead, not
arithmetic. Profiled on the tiny model (1 thread, G=4, 64 new tokens), ``generate`` spent ~3 ms per
new token, of which the decoder layers took ~1.3 ms; the rest was per-step glue: recomputing the
rotary embedding and the causal mask, the VLM wrapper's rope-index bookkeeping and
``prepare_inputs_for_generation``, the logits processors (``isin`` and ``where`` per processor per
step) and autograd bookkeeping. This loop does that work once:

- the prompt runs once per question through the full model (vision tower included) into a
  ``DynamicCache``, which is then repeated to the B*G rows (transformers' cache API);
- decode positions are known in advance (each row's last prompt position + 1 + t, in all three
  rope sections: generated tokens are text), so the rotary cos/sin of every step are computed in
  one call of the model's own ``rotary_emb``, and the attention mask is built once and sliced;
- each step embeds the new tokens and runs transformers' decoder layers, final norm and
  ``lm_head`` on that one position (no hand-written attention: the layers, their attention
  backend and the cache update are the model's own);
- suppressed tokens and ``min_new_tokens`` are one precomputed additive bias; temperature, top-k
  and top-p are applied in ``generate``'s order with its own warpers, and sampling draws from the
  same ``softmax`` + ``multinomial``, so a seed gives the tokens ``generate`` gives
  (tests/model/test_shared_prefix.py);
- it runs under ``torch.inference_mode`` (no autograd bookkeeping per op).

Only the settings :func:`trainer.model.loading.generation_kwargs` produces (plus ``min_new_tokens``),
with no other logits processor from the checkpoint's ``generation_config``, take this path;
anything else (``synced_gpus`` under ZeRO-3, a repetition penalty, a ``min_p`` default) goes
through ``generate`` (:func:`lean_decoding_supported`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from trainer.model import hybrid_cache, prefix
from trainer.model.families import family_of_model, unwrap

# The generation settings this loop implements exactly as ``generate`` does.
LEAN_KEYS = frozenset(
    {
        "max_new_tokens",
        "min_new_tokens",
        "do_sample",
        "eos_token_id",
        "pad_token_id",
        "suppress_tokens",
        "repetition_penalty",
        "temperature",
        "top_p",
        "top_k",
    }
)
_REQUIRED = ("max_new_tokens", "do_sample", "eos_token_id", "pad_token_id")
# Prompt inputs the 3-D rope positions are computed from.


# Checkpoint generation_config entries the loop may ignore: the settings above (passed explicitly
# by trainer.model.loading.generation_kwargs) and ones that add no logits processor.
_CONFIG_KEYS = LEAN_KEYS | {
    "bos_token_id",
    "transformers_version",
    "max_length",
    "use_cache",
    "_from_model_config",
}


def lean_decoding_supported(generation_kwargs: dict[str, Any], model: Any = None) -> bool:
    """Whether :func:`decode_shared_prefix` reproduces ``generate`` for these settings (and, given
    ``model``, for the defaults its checkpoint's ``generation_config`` would add, e.g. ``min_p``)."""
    if not set(generation_kwargs) <= LEAN_KEYS or any(k not in generation_kwargs for k in _REQUIRED):
        return False
    config = getattr(unwrap(model), "generation_config", None) if model is not None else None
    if config is not None and not set(config.to_diff_dict()) <= _CONFIG_KEYS:
        return False
    if model is not None and _fsdp_sharded(model):
        return False
    return generation_kwargs.get("repetition_penalty") in (None, 1.0)


def _fsdp_sharded(model: Any) -> bool:
    """FSDP gathers the root's weights (embeddings, final norm, lm_head) only in the root's own
    forward, which the loop does not go through; such models decode with ``generate``."""
    try:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    except ImportError:  # a torch build without torch.distributed
        return False
    return any(isinstance(m, FSDPModule | FullyShardedDataParallel) for m in unwrap(model).modules())


def _as_list(ids: int | Sequence[int] | None) -> list[int]:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]


class Sampler:
    """Next tokens from last-position logits, with ``generate``'s processors precomputed."""

    def __init__(self, kwargs: dict[str, Any], vocab: int, device: torch.device) -> None:
        self.eos = torch.tensor(_as_list(kwargs["eos_token_id"]), device=device)
        self.pad = int(kwargs["pad_token_id"])
        self.min_new = int(kwargs.get("min_new_tokens") or 0)
        # -inf on suppressed tokens (x + -inf == -inf, x + 0 == x: the values ``where`` gives).
        self.bias = torch.zeros(vocab, device=device)
        self.bias[_as_list(kwargs.get("suppress_tokens"))] = float("-inf")
        self.bias_early = self.bias.clone()  # before min_new_tokens: no end of sequence either
        self.bias_early[self.eos] = float("-inf")
        self.do_sample = bool(kwargs["do_sample"])
        temperature, top_k, top_p = kwargs.get("temperature"), kwargs.get("top_k"), kwargs.get("top_p")
        self.temperature = temperature if self.do_sample and temperature not in (None, 1.0) else None
        self.warpers = []
        if self.do_sample and top_k:
            self.warpers.append(TopKLogitsWarper(top_k=int(top_k)))
        if self.do_sample and top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=float(top_p)))

    def __call__(self, logits: torch.Tensor, step: int, unfinished: torch.Tensor) -> torch.Tensor:
        """Tokens (N,) for decode step ``step`` from logits (N, V); finished rows get padding."""
        scores = logits.float() + (self.bias_early if step < self.min_new else self.bias)
        if self.temperature is not None:
            scores = scores / self.temperature
        for warper in self.warpers:
            scores = warper(None, scores)
        if self.do_sample:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            tokens = torch.argmax(scores, dim=-1)
        if step < self.min_new:  # no end of sequence yet, so no row has finished
            return tokens
        return torch.where(unfinished, tokens, self.pad)


def decode_mask(lm: Any, prompt_mask: torch.Tensor, new_tokens: int) -> torch.Tensor | None:
    """The attention mask (N, 1, 1, P + new) of every decode step, sliced per step; None when no
    row is padded (one query per step sees its whole past). sdpa takes a boolean mask, eager an
    additive one (the forms transformers' own mask functions give them)."""
    if bool(prompt_mask.all()):
        return None
    rows = prompt_mask.shape[0]
    keep = torch.cat([prompt_mask.bool(), prompt_mask.new_ones(rows, new_tokens, dtype=torch.bool)], dim=1)
    keep = keep[:, None, None, :]
    if lm.config.get_text_config()._attn_implementation == "sdpa":
        return keep
    dtype = lm.dtype
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def generation_positions(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The positions (4, B, P: text row, then the three rope sections) ``generate`` gives the
    prompts (for text-only prompts they skip left padding, unlike the training forward's)."""
    family = family_of_model(model)
    keys = ("attention_mask", "mm_token_type_ids", *family.rope_grid_keys)
    rope_inputs = {key: inputs[key] for key in keys if key in inputs}
    return family.generation_positions(model, inputs["input_ids"], rope_inputs)


def _prefill(
    model: Any, inputs: dict[str, torch.Tensor], positions: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, DynamicCache]:
    """The B prompts through the full model once (vision tower included): the last position's
    logits and the KV cache, both repeated to the B*G rows."""
    lm = unwrap(model)
    cache = DynamicCache(config=lm.config.get_text_config())
    vision = {key: inputs[key] for key in prefix.VISION_KEYS if key in inputs}
    logits = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=positions,
        **{prefix.cache_kwarg(model): cache},
        use_cache=True,
        logits_to_keep=1,
        **vision,
    ).logits[:, -1, :]
    hybrid_cache.repeat_rows(cache, group_size)
    return logits.repeat_interleave(group_size, 0), cache


@torch.inference_mode()
def _decode(
    model: Any, inputs: dict[str, torch.Tensor], group_size: int, kwargs: dict[str, Any]
) -> torch.Tensor:
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    lm = unwrap(model)
    text = family_of_model(model).language_model_of(model)
    positions = generation_positions(model, inputs)
    logits, cache = _prefill(model, inputs, positions, group_size)
    rows, new = logits.shape[0], int(kwargs["max_new_tokens"])
    cache_arg = {prefix.cache_kwarg(model): cache}
    sampler = Sampler(kwargs, logits.shape[-1], logits.device)
    # Generated token t's rope position: the row's last prompt position + 1 + t, the same in all
    # three sections (generated tokens are text).
    start = positions[1:, :, -1:].repeat_interleave(group_size, 1) + 1
    step_positions = start + torch.arange(new, device=ids.device).view(1, 1, -1)
    cos, sin = text.rotary_emb(text.embed_tokens.weight, step_positions)  # (N, new, head_dim) each
    attn_mask = decode_mask(lm, mask.repeat_interleave(group_size, 0), new)
    # Linear-attention layers take no mask for one new token (a generated token is never padding).
    linear = [kind == hybrid_cache.LINEAR for kind in hybrid_cache.layer_types(lm.config)]
    out = torch.full((rows, new), sampler.pad, dtype=ids.dtype, device=ids.device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=ids.device)
    steps = 0
    for t in range(new):
        if t > 0:
            # Feed token t-1 (at rope position start + t - 1); the cache then holds P + t keys.
            hidden = text.embed_tokens(out[:, t - 1 : t])
            step_mask = None if attn_mask is None else attn_mask[..., : ids.shape[1] + t]
            for layer, is_linear in zip(text.layers, linear, strict=True):
                hidden = layer(
                    hidden,
                    attention_mask=None if is_linear else step_mask,
                    position_embeddings=(cos[:, t - 1 : t], sin[:, t - 1 : t]),
                    use_cache=True,
                    **cache_arg,
                )
            logits = lm.lm_head(text.norm(hidden[:, -1, :]))
        tokens = sampler(logits, t, unfinished)
        out[:, t] = tokens
        steps = t + 1
        if t < sampler.min_new:
            continue  # end of sequence is suppressed until min_new_tokens: nothing to check
        unfinished &= ~torch.isin(tokens, sampler.eos)
        if not bool(unfinished.any()):  # one sync per step, as generate's stopping check
            break
    return torch.cat([ids.repeat_interleave(group_size, 0), out[:, :steps]], dim=1)


def decode_shared_prefix(
    model: Any, inputs: dict[str, torch.Tensor], group_size: int, generation_kwargs: dict[str, Any]
) -> torch.Tensor:
    """``generate``-shaped output (B*G, P + new): the prompt, then each row's sampled tokens
    (padding after its end of sequence), with the B prompts prefilled once and decoded G times.

    ``generation_kwargs`` must pass :func:`lean_decoding_supported`. The result is an ordinary
    tensor (not an inference-mode one), so the loss can index with it under autograd."""
    return _decode(model, inputs, group_size, generation_kwargs).clone()
