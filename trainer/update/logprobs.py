"""Per-token log-probabilities of sampled completions under a model (policy or reference).

Row b*G + g is prompt b followed by completion g, the grouped order rollouts come in. Two paths
give the same numbers (tests/model/test_shared_prefix.py):

- shared prefix (default, ``shared_prefix=True``): the prompt runs once per group and the G
  completions attend to its cached keys/values (:mod:`trainer.model.prefix`); only completion
  positions go through the language model G times.
- per sample: every prompt row is repeated G times and the whole sequence runs per row; the
  vision tower still runs once per prompt, its output shared by the G rows
  (``mm_encoder_outputs``), with gradients reaching the merger through the shared features.
  Used when ``shared_prefix`` is off or the attention backend cannot take a shared cache.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.model import prefix
from trainer.model.families import family_of_model
from trainer.rollout.hf import RolloutBatch


def sequence_inputs(rollout: RolloutBatch, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Text-side model inputs for the (B*G) sequences prompt + completion (no pixels: see
    :func:`shared_vision_outputs`)."""
    g = rollout.group_size
    p = rollout.prompt.inputs
    completion = rollout.completion_ids.to(device)
    mask = rollout.completion_mask.to(device)
    prompt_mask = p["attention_mask"].to(device).repeat_interleave(g, 0)
    inputs: dict[str, Any] = {
        "input_ids": torch.cat([p["input_ids"].to(device).repeat_interleave(g, 0), completion], dim=1),
        "attention_mask": torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=1),
    }
    if "mm_token_type_ids" in p:
        # Generated tokens are text (type 0); the types tell the model where 3-D rope applies.
        types = p["mm_token_type_ids"].to(device).repeat_interleave(g, 0)
        inputs["mm_token_type_ids"] = torch.cat([types, torch.zeros_like(completion)], dim=1)
    # The grids stay per sequence: 3-D rope positions are computed from them for every row.
    for key in ("video_grid_thw", "image_grid_thw", "second_per_grid_ts"):
        if key in p:
            inputs[key] = torch.as_tensor(p[key]).repeat_interleave(g, 0).to(device)
    return inputs


def shared_vision_outputs(model: Any, rollout: RolloutBatch, device: torch.device | str) -> dict[str, Any]:
    """Vision features of each prompt's video/image computed once and repeated for its G rows."""
    g = rollout.group_size
    p = rollout.prompt.inputs
    # The outer model's methods: under FSDP2 they gather the root's weights first
    # (trainer.model.reference.register_vision_methods).
    family = family_of_model(model)
    outputs: dict[str, Any] = {}
    for kind, pixels_key, grid_key in (
        ("video", "pixel_values_videos", "video_grid_thw"),
        ("image", "pixel_values", "image_grid_thw"),
    ):
        if pixels_key in p:
            features = family.encode_vision(model, kind, p[pixels_key].to(device), p[grid_key].to(device))
            outputs[kind] = family.vision_outputs(tuple(f for f in features for _ in range(g)))
    return outputs


def completion_logprobs(
    model: Any, rollout: RolloutBatch, temperature: float = 1.0, shared_prefix: bool = True
) -> torch.Tensor:
    """Log-probs (B*G, T) of each completion token given everything before it (no entropy: the
    reference and old-policy passes need only these).

    Dividing logits by the sampling temperature scores tokens under the distribution they were
    sampled from (as TRL does), so the importance ratio starts at 1.
    """
    log_probs = _completion_log_softmax(model, rollout, temperature, shared_prefix)
    return _gather(log_probs, rollout)


def completion_logprobs_and_entropy(
    model: Any, rollout: RolloutBatch, temperature: float = 1.0, shared_prefix: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (B*G, T) of the completion tokens and the entropy (B*G, T) of the sampling
    distribution at each completion position (in nats, with grad, for an entropy bonus)."""
    log_probs = _completion_log_softmax(model, rollout, temperature, shared_prefix)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return _gather(log_probs, rollout), entropy


def _completion_log_softmax(
    model: Any, rollout: RolloutBatch, temperature: float, shared_prefix: bool
) -> torch.Tensor:
    """Log-softmax (B*G, T, V) of the tempered logits at every completion position."""
    device = next(model.parameters()).device
    if prefix.use_shared_prefix(model, shared_prefix):
        logits = prefix.shared_prefix_logits(model, rollout, device)
    else:
        logits = per_sample_logits(model, rollout, device)
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def _gather(log_probs: torch.Tensor, rollout: RolloutBatch) -> torch.Tensor:
    completion = rollout.completion_ids.to(log_probs.device)
    return log_probs.gather(-1, completion.unsqueeze(-1)).squeeze(-1)


def per_sample_logits(model: Any, rollout: RolloutBatch, device: torch.device | str) -> torch.Tensor:
    """Logits (B*G, T, V) predicting each completion token, from B*G full-sequence forwards."""
    inputs = sequence_inputs(rollout, device)
    t = rollout.completion_ids.shape[1]
    # Only the last T+1 positions' logits are needed: vocab-sized logits for the prompt would
    # dominate memory on real models.
    return model(
        **inputs,
        mm_encoder_outputs=shared_vision_outputs(model, rollout, device),
        logits_to_keep=t + 1,
        use_cache=False,
    ).logits[:, :-1, :]
