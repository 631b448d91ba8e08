"""Per-token log-probabilities of sampled completions under a model (policy or reference).

The prompt batch holds each video once; for the training forward every prompt row is repeated G
times so row b*G + g is prompt b followed by completion g, matching the grouped order
``generate(num_return_sequences=G)`` returns. The vision tower runs once per prompt and its
output is shared by the G rows (``mm_encoder_outputs``): G times less vision compute than
repeating the pixels, with gradients still reaching the merger through the shared features.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.rollout import RolloutBatch


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


def _vlm_core(model: Any) -> Any:
    """The Qwen2_5_VLModel inside DDP / peft / ForConditionalGeneration wrappers."""
    inner = getattr(model, "module", model)  # DDP
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return inner.model


def shared_vision_outputs(model: Any, rollout: RolloutBatch, device: torch.device | str) -> dict[str, Any]:
    """Vision features of each prompt's video/image computed once and repeated for its G rows."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    g = rollout.group_size
    p = rollout.prompt.inputs
    core = _vlm_core(model)
    outputs: dict[str, Any] = {}
    for kind, pixels_key, grid_key, encode in (
        ("video", "pixel_values_videos", "video_grid_thw", core.get_video_features),
        ("image", "pixel_values", "image_grid_thw", core.get_image_features),
    ):
        if pixels_key in p:
            features = encode(
                p[pixels_key].to(device), p[grid_key].to(device), return_dict=True
            ).pooler_output
            outputs[kind] = BaseModelOutputWithPooling(
                pooler_output=tuple(f for f in features for _ in range(g))
            )
    return outputs


def completion_logprobs(model: Any, rollout: RolloutBatch, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs (B*G, T) of each completion token given everything before it.

    Dividing logits by the sampling temperature scores tokens under the distribution they were
    sampled from (as TRL does), so the importance ratio starts at 1.
    """
    return completion_logprobs_and_entropy(model, rollout, temperature)[0]


def completion_logprobs_and_entropy(
    model: Any, rollout: RolloutBatch, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (B*G, T) of the completion tokens and the entropy (B*G, T) of the sampling
    distribution at each completion position (in nats, with grad, for an entropy bonus)."""
    device = next(model.parameters()).device
    inputs = sequence_inputs(rollout, device)
    completion = rollout.completion_ids.to(device)
    t = completion.shape[1]
    # Only the last T+1 positions' logits are needed: vocab-sized logits for the prompt would
    # dominate memory on real models.
    logits = model(
        **inputs,
        mm_encoder_outputs=shared_vision_outputs(model, rollout, device),
        logits_to_keep=t + 1,
        use_cache=False,
    ).logits[:, :-1, :]
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
    logp = log_probs.gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return logp, entropy
