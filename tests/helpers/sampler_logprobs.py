"""The policy's log-probs of a vLLM rollout's tokens, to hold vLLM's own log-probs against."""

from __future__ import annotations

from typing import Any

import torch

from trainer.rollout.hf import RolloutBatch
from trainer.update.logprobs import sequence_inputs, shared_vision_outputs


def policy_logprobs(model: Any, rollout: RolloutBatch, kwargs: dict[str, Any]) -> torch.Tensor:
    """(B, T) log-probs of the sampled tokens over the same support as the sampler (the suppressed
    vision tokens left out of the softmax)."""
    inputs = sequence_inputs(rollout, "cpu")
    t = rollout.completion_ids.shape[1]
    with torch.no_grad():
        logits = (
            model(
                **inputs,
                mm_encoder_outputs=shared_vision_outputs(model, rollout, "cpu"),
                logits_to_keep=t + 1,
            )
            .logits[:, :-1, :]
            .float()
        )
    logits[..., kwargs["suppress_tokens"]] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, rollout.completion_ids.unsqueeze(-1)).squeeze(-1)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a - b).abs()[mask.bool()].max())
