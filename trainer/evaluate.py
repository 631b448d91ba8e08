"""Held-out evaluation: greedy answers to MCQ records -> accuracy, format rate, confusion, per record."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.data.video import DecodeCache, VideoConfig
from trainer.rewards import score_completion
from trainer.rollout import build_prompt_batch, generate_rollouts


@dataclass
class EvalResult:
    accuracy: float
    format_rate: float
    num_records: int
    seconds: float
    # correct letter -> chosen letter (or "none") -> count
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "format_rate": self.format_rate, "num_records": self.num_records}


@torch.no_grad()
def evaluate(
    model: Any,
    processor: Any,
    records: Sequence[Any],
    video_cfg: VideoConfig,
    generation_kwargs: dict[str, Any],
    batch_size: int = 16,
    cache: DecodeCache | None = None,
) -> EvalResult:
    """Answer every record once (``generation_kwargs`` decide greedy or sampled) and score it."""
    start = time.perf_counter()
    per_record: list[dict[str, Any]] = []
    confusion: dict[str, dict[str, int]] = {}
    for i in range(0, len(records), batch_size):
        chunk = list(records[i : i + batch_size])
        rollout = generate_rollouts(
            model,
            processor,
            build_prompt_batch(processor, chunk, video_cfg, cache=cache),
            1,
            generation_kwargs,
        )
        for record, text in zip(chunk, rollout.texts, strict=True):
            b = score_completion(text, record.answer, record.options, mode=record.mode)
            chosen = b.choice or "none"
            confusion.setdefault(record.answer, {}).setdefault(chosen, 0)
            confusion[record.answer][chosen] += 1
            per_record.append(
                {
                    "id": record.id,
                    "correct": record.answer,
                    "chosen": b.choice,
                    "is_correct": b.accuracy_reward > 0,
                    "format_ok": b.format_reward > 0,
                    "completion": text,
                }
            )
    n = len(per_record)
    return EvalResult(
        accuracy=sum(r["is_correct"] for r in per_record) / max(n, 1),
        format_rate=sum(r["format_ok"] for r in per_record) / max(n, 1),
        num_records=n,
        seconds=time.perf_counter() - start,
        confusion=confusion,
        records=per_record,
    )
