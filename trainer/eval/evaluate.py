"""Held-out evaluation: greedy answers to records -> accuracy, format rate, confusion, per record.

Records of every problem type are scored as ``vgrpo eval`` scores them (``trainer.eval.benchmark``):
``accuracy`` is over the records whose metric is accuracy (multiple choice and numerical), the
confusion over the multiple-choice ones, and ``per_type`` holds each type's metric and interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.core.video_config import VideoConfig
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.data.video import DecodeCache
from trainer.eval.benchmark import BenchmarkItem, score_item, stored_type, stored_type_stats
from trainer.rollout.hf import build_prompt_batch, generate_rollouts
from trainer.score.answer_types import ACCURACY, EVAL_METRICS


@dataclass
class EvalResult:
    accuracy: float
    format_rate: float
    num_records: int
    seconds: float
    # correct letter -> chosen letter (or "none") -> count
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    # {"type", "n", "metric", "value", "interval"} per problem type (trainer.eval.benchmark.TypeStats)
    per_type: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "format_rate": self.format_rate, "num_records": self.num_records}


def batch_bounds(num_records: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each generate batch, in record order (the last may be short)."""
    return [(i, min(i + batch_size, num_records)) for i in range(0, num_records, batch_size)]


def process_share(num_batches: int, process_index: int, num_processes: int) -> range:
    """The contiguous run of batch indices one process answers: the first ``num_batches %
    num_processes`` processes take one more. Contiguous shares gathered in process order give the
    batches back in record order, and every batch is the one a single process would have built, so
    the result does not depend on the number of processes.

    >>> [list(process_share(5, p, 2)) for p in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    base, extra = divmod(num_batches, num_processes)
    start = process_index * base + min(process_index, extra)
    return range(start, start + base + (1 if process_index < extra else 0))


def _answer(
    model: Any,
    processor: Any,
    chunk: list[Any],
    video_cfg: VideoConfig,
    kwargs: dict[str, Any],
    cache: DecodeCache | None,
) -> list[str]:
    rollout = generate_rollouts(
        model, processor, build_prompt_batch(processor, chunk, video_cfg, cache=cache), 1, kwargs
    )
    return list(rollout.texts)


def score_record(record: Any, text: str) -> dict[str, Any]:
    """One answered record as the result lists it: the letter it chose and whether that is right, read
    by the rewards' parser (``score_completion``), so eval and training agree on every answer. A
    record of another problem type lists its closed answer block as ``chosen`` and adds its
    ``problem_type`` and ``value`` (``trainer.eval.benchmark.score_item``)."""
    row = score_item(BenchmarkItem(record=record, task=""), text)
    doc = {
        "id": record.id,
        "correct": record.answer,
        "chosen": row.parsed,
        "is_correct": row.is_correct,
        "format_ok": row.format_ok,
        "completion": text,
    }
    if row.problem_type != MULTIPLE_CHOICE:
        doc.update(problem_type=row.problem_type, value=row.value)
    return doc


@torch.no_grad()
def evaluate(
    model: Any,
    processor: Any,
    records: Sequence[Any],
    video_cfg: VideoConfig,
    generation_kwargs: dict[str, Any],
    batch_size: int = 16,
    cache: DecodeCache | None = None,
    processes: Any = None,
    on_progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Answer every record once (``generation_kwargs`` decide greedy or sampled) and score it.

    ``processes``: an accelerate ``Accelerator`` or ``PartialState`` when several processes take
    part; each answers its :func:`process_share` of the batches and every process gets the whole
    result, in record order. With ``synced_gpus`` in ``generation_kwargs`` (ZeRO-3/FSDP: sharded
    weights, so every forward is collective) a process with fewer batches repeats one and drops
    its answers, so all processes run the same number of generate calls.
    ``on_progress(n)`` after each of this process's batches: about how many records are answered
    over all processes (this process's count times the number of processes, at most all).
    """
    start = time.perf_counter()
    index, world = (processes.process_index, processes.num_processes) if processes is not None else (0, 1)
    batches = batch_bounds(len(records), batch_size)
    mine = [batches[b] for b in process_share(len(batches), index, world)]
    local: list[dict[str, Any]] = []
    for lo, hi in mine:
        chunk = list(records[lo:hi])
        texts = _answer(model, processor, chunk, video_cfg, generation_kwargs, cache)
        local.extend(score_record(r, t) for r, t in zip(chunk, texts, strict=True))
        if on_progress is not None:
            on_progress(min(len(records), len(local) * world))
    if generation_kwargs.get("synced_gpus") and batches:
        for _ in range(len(process_share(len(batches), 0, world)) - len(mine)):
            lo, hi = batches[0]
            _answer(model, processor, list(records[lo:hi]), video_cfg, generation_kwargs, cache)
    per_record = local
    if world > 1:
        from accelerate.utils import gather_object

        per_record = gather_object(local)
    confusion: dict[str, dict[str, int]] = {}
    for r in per_record:
        if stored_type(r) != MULTIPLE_CHOICE:
            continue
        chosen = r["chosen"] or "none"
        confusion.setdefault(r["correct"], {}).setdefault(chosen, 0)
        confusion[r["correct"]][chosen] += 1
    n = len(per_record)
    scored = [r for r in per_record if EVAL_METRICS.get(stored_type(r)) == ACCURACY]
    return EvalResult(
        accuracy=sum(r["is_correct"] for r in scored) / max(len(scored), 1),
        format_rate=sum(r["format_ok"] for r in per_record) / max(n, 1),
        num_records=n,
        seconds=time.perf_counter() - start,
        confusion=confusion,
        records=per_record,
        per_type=[s.to_dict() for s in stored_type_stats(per_record)],
    )
