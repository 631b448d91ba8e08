"""Benchmark scoring and statistics: per-task accuracy with Wilson intervals, answer distributions.

Pure functions (no model, no I/O): records and completions in, a :class:`BenchmarkReport` out.
``trainer.eval.benchmark_data`` reads the files; ``vgrpo eval`` generates the completions.

- Only multiple-choice records are scored. Video-R1 eval files also hold ``numerical``, ``OCR``,
  ``free-form`` and ``regression`` problems: those are counted per problem type in ``skipped``,
  never scored as wrong and never dropped silently.
- A record's task is its ``task`` field (our formats), else a ``data_source`` that names a task
  (not a URL: MMVU and VideoMMMU store the YouTube link there), else ``task_type`` (Video-MME),
  else the benchmark folder after ``Evaluation/`` in ``path`` (how Video-R1 lays out its eval
  videos), else the file the record came from.
- Accuracy intervals are Wilson score intervals (Wilson 1927; Brown, Cai & DasGupta 2001 show the
  normal "Wald" interval undercovers at the n of a benchmark subset and collapses at p = 0 or 1).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.data.records import MCQRecord
from trainer.score.rewards import score_completion

MULTIPLE_CHOICE = "multiple choice"
# Spellings of the multiple-choice type seen in Video-R1 style files.
_MCQ_SPELLINGS = {"multiple choice", "multiple-choice", "multiple_choice", "mcq"}
# z for a two-sided 95% interval: the 0.975 quantile of the standard normal.
Z_95 = 1.959963984540054
NO_ANSWER = "none"  # the answer-distribution key of completions with no readable choice


def problem_type(raw: Mapping[str, Any]) -> str:
    """The record's problem type, normalised; records without one are multiple choice (our formats)."""
    value = raw.get("problem_type")
    if value is None or not str(value).strip():
        return MULTIPLE_CHOICE
    text = str(value).strip().lower()
    return MULTIPLE_CHOICE if text in _MCQ_SPELLINGS else text


def task_of(raw: Mapping[str, Any], fallback: str) -> str:
    """Which task a raw record belongs to (order in the module docstring).

    >>> task_of({"path": "./Evaluation/MVBench/clevrer/video_validation/v.mp4"}, "f")
    'MVBench'
    >>> task_of({"data_source": "https://youtu.be/x", "task_type": "OCR Problems"}, "f")
    'OCR Problems'
    """
    for key in ("task", "data_source", "task_type"):
        value = raw.get(key)
        if isinstance(value, str) and value.strip() and "://" not in value:
            return value.strip()
    path = raw.get("path")
    if isinstance(path, str):
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if "Evaluation" in parts[:-2]:
            return parts[parts.index("Evaluation") + 1]
    return fallback


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for ``correct`` successes out of ``n``; (0, 1) when n == 0.

    centre = (p + z²/2n) / (1 + z²/n), half width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    if n < 0 or not 0 <= correct <= n:
        raise ValueError(f"wilson_interval: need 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class BenchmarkItem:
    """One scored-to-be multiple-choice record and the task it counts towards."""

    record: MCQRecord
    task: str


def stratified_subset(
    items: Sequence[BenchmarkItem],
    *,
    limit: int | None = None,
    percent: float | None = None,
    seed: int = 0,
) -> list[BenchmarkItem]:
    """At most ``limit`` records per task, or ``percent`` % of each task (at least one), seeded.

    Sampling within each task keeps every task in a quick look (a plain head of a Video-R1 file is
    one task); the result keeps file order so runs over the same subset line up record by record.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if percent is not None and not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    if limit is None and percent is None:
        return list(items)
    by_task: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_task.setdefault(item.task, []).append(i)
    keep: list[int] = []
    for task, indices in by_task.items():
        count = len(indices)
        if percent is not None:
            count = max(1, int(count * percent / 100))
        if limit is not None:
            count = min(count, limit)
        # A string seed is hashed by `random`, so the subset is the same on every machine.
        keep.extend(random.Random(f"{seed}:{task}").sample(indices, count))
    return [items[i] for i in sorted(keep)]


@dataclass(frozen=True)
class ScoredRow:
    """One answered record, as the failure browser shows it."""

    id: str
    task: str
    question: str
    video: str | None
    options: dict[str, str]
    completion: str
    parsed: str | None  # the option letter read from the answer, None when unreadable
    answer: str
    is_correct: bool
    format_ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_items(items: Sequence[BenchmarkItem], completions: Sequence[str]) -> list[ScoredRow]:
    """Score each item's completion (the rewards' parser: strict tags, ambiguous answers unreadable)."""
    if len(items) != len(completions):
        raise ValueError(f"{len(items)} records but {len(completions)} completions")
    rows = []
    for item, text in zip(items, completions, strict=True):
        r = item.record
        b = score_completion(text, r.answer, r.options, mode=r.mode)
        rows.append(
            ScoredRow(
                id=r.id,
                task=item.task,
                question=r.question,
                video=r.video or r.image,
                options=dict(r.options),
                completion=text,
                parsed=b.choice,
                answer=r.answer,
                is_correct=b.accuracy_reward > 0,
                format_ok=b.format_reward > 0,
            )
        )
    return rows


@dataclass(frozen=True)
class TaskStats:
    """Accuracy and answer statistics over one task (or all of them: ``task == "overall"``)."""

    task: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    format_rate: float
    unparseable_rate: float
    answer_distribution: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_stats(task: str, rows: Sequence[ScoredRow]) -> TaskStats:
    n = len(rows)
    correct = sum(r.is_correct for r in rows)
    low, high = wilson_interval(correct, n)
    dist = Counter(r.parsed or NO_ANSWER for r in rows)
    return TaskStats(
        task=task,
        n=n,
        accuracy=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        format_rate=sum(r.format_ok for r in rows) / n if n else 0.0,
        unparseable_rate=sum(r.parsed is None for r in rows) / n if n else 0.0,
        # Letters in order, "none" last, so two models' distributions line up.
        answer_distribution={k: dist[k] for k in sorted(dist, key=lambda k: (k == NO_ANSWER, k))},
    )


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything ``vgrpo eval --json`` writes and the run database stores with an evaluation."""

    overall: TaskStats
    per_task: list[TaskStats]
    skipped: dict[str, int]
    rows: list[ScoredRow]

    def summary(self) -> dict[str, Any]:
        """The JSON object of ``--json`` without the per-record rows."""
        keys = ("n", "accuracy", "ci_low", "ci_high", "format_rate", "unparseable_rate")
        overall = {k: getattr(self.overall, k) for k in keys}
        return {
            "overall": overall,
            "per_task": [{"task": t.task, **{k: getattr(t, k) for k in keys}} for t in self.per_task],
            "answer_distribution": dict(self.overall.answer_distribution),
            "per_task_answer_distribution": {t.task: dict(t.answer_distribution) for t in self.per_task},
            "skipped": dict(self.skipped),
        }


def summarize(rows: Sequence[ScoredRow], skipped: Mapping[str, int] | None = None) -> BenchmarkReport:
    """Overall and per-task statistics (tasks sorted by name) of scored rows."""
    by_task: dict[str, list[ScoredRow]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row)
    return BenchmarkReport(
        overall=task_stats("overall", rows),
        per_task=[task_stats(task, by_task[task]) for task in sorted(by_task)],
        skipped=dict(sorted((skipped or {}).items())),
        rows=list(rows),
    )


def fingerprint(items: Sequence[BenchmarkItem]) -> str:
    """SHA-256 over what is asked of the model (ids, tasks, questions, options, answers, media):
    the same records give the same fingerprint wherever the files live."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for item in items:
        r = item.record
        media = (r.video or r.image or "").replace("\\", "/").rsplit("/", 1)[-1]
        doc = [r.id, item.task, r.question, sorted(r.options.items()), r.answer, media, r.mode]
        digest.update(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def stored_answer(row: Mapping[str, Any]) -> str:
    """The right letter of a stored result row: ``answer`` (ScoredRow) or ``correct`` (rows written
    by training's periodic evaluation, trainer.eval.evaluate)."""
    return str(row.get("answer", row.get("correct", "")))


def stored_choice(row: Mapping[str, Any]) -> str:
    """The letter a stored result row chose (``parsed`` or ``chosen``), ``"none"`` when unreadable."""
    value = row.get("parsed", row.get("chosen"))
    return str(value) if value else NO_ANSWER
