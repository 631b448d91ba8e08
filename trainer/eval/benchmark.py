"""Benchmark scoring and statistics: per-task and per-problem-type results with intervals, answer
distributions.

Pure functions (no model, no I/O): records and completions in, a :class:`BenchmarkReport` out.
``trainer.eval.benchmark_data`` reads the files; ``vgrpo eval`` generates the completions.

- Every problem type of ``trainer.data.problem_types`` is scored, each under its metric
  (``trainer.score.answer_types.EVAL_METRICS``): multiple choice by the option letter
  (``score_completion``, as training), numerical by accuracy, OCR by word error rate (lower is
  better), free-form by mean ROUGE-1/2/L F, regression by VSI-Bench's MRA. The non-multiple-choice
  types read the completion's closed answer block (``split_completion``); without one an item scores
  its metric's worst value. Records of a type that cannot be scored (an unknown one) are counted per
  type in ``skipped``, never scored as wrong and never dropped silently.
- The headline (``overall``, and each entry of ``per_task``) is accuracy over the items whose metric
  is accuracy: multiple choice and numerical. A task with no such item is left out of ``per_task``;
  every type of every task is in ``per_type`` / ``per_task_type``. The answer distribution counts
  option letters, so multiple-choice items only.
- A record's task is its ``task`` field (our formats), else a ``data_source`` that names a task
  (not a URL: MMVU and VideoMMMU store the YouTube link there), else ``task_type`` (Video-MME),
  else the benchmark folder after ``Evaluation/`` in ``path`` (how Video-R1 lays out its eval
  videos), else the file the record came from.
- Accuracy intervals are Wilson score intervals (Wilson 1927; Brown, Cai & DasGupta 2001 show the
  normal "Wald" interval undercovers at the n of a benchmark subset and collapses at p = 0 or 1).
  The continuous metrics (WER, ROUGE, MRA) get the normal-approximation interval of their mean,
  ``mean ± z·s/√n`` with the sample standard deviation ``s`` (n - 1), cut to the metric's range
  ([0, 1]; WER [0, ∞)), and none (null) below two items, where ``s`` is undefined.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.data.problem_types import MULTIPLE_CHOICE, PROBLEM_TYPES, canonical_type
from trainer.data.records import MCQRecord
from trainer.score.answer_types import ACCURACY, EVAL_METRICS, WER, eval_value
from trainer.score.rewards import format_reward, score_completion, split_completion

# z for a two-sided 95% interval: the 0.975 quantile of the standard normal.
Z_95 = 1.959963984540054
NO_ANSWER = "none"  # the answer-distribution key of completions with no readable choice


def problem_type(raw: Mapping[str, Any]) -> str:
    """A raw record's problem type in Video-R1's spelling (``canonical_type``); records without one
    are multiple choice (our formats), and an unknown one is kept, lowercased, to be counted.

    >>> problem_type({"problem_type": "ocr"}), problem_type({}), problem_type({"problem_type": "Spot"})
    ('OCR', 'multiple choice', 'spot')
    """
    value = raw.get("problem_type")
    try:
        return canonical_type(value)
    except ValueError:
        return str(value).strip().lower()


def item_type(record: Any) -> str:
    """A loaded record's problem type (records from before ``problem_type`` existed are multiple
    choice), in Video-R1's spelling when it is a known one."""
    value = getattr(record, "problem_type", MULTIPLE_CHOICE)
    try:
        return canonical_type(value)
    except ValueError:
        return str(value)


def is_scorable(problem_type: str) -> bool:
    """Has the type a metric here (``EVAL_METRICS``)? Records of other types are only counted."""
    return problem_type in EVAL_METRICS


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


def mean_interval(
    values: Sequence[float], low: float = 0.0, high: float = math.inf, z: float = Z_95
) -> tuple[float, float] | None:
    """Normal-approximation interval of a mean, ``mean ± z·s/√n`` (``s`` the sample standard
    deviation, n - 1), cut to ``[low, high]``; None for fewer than two values.

    >>> [round(x, 4) for x in mean_interval([0.0, 0.5, 1.0], high=1.0)]  # s = 0.5: 0.5 ± 0.5658
    [0.0, 1.0]
    >>> [round(x, 4) for x in mean_interval([0.4, 0.6])]  # s = 0.1414: 0.5 ± 1.96·0.1
    [0.304, 0.696]
    """
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    s = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * s / math.sqrt(n)
    return max(low, mean - half), min(high, mean + half)


@dataclass(frozen=True)
class BenchmarkItem:
    """One record to be scored and the task it counts towards."""

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
    # multiple choice: the option letter read from the answer; other types: the closed answer
    # block's text. None when unreadable.
    parsed: str | None
    answer: str  # the right letter, or the reference answer
    is_correct: bool  # right, or for a continuous metric its best value (WER 0, ROUGE/MRA 1)
    format_ok: bool
    problem_type: str = MULTIPLE_CHOICE
    value: float | None = None  # the item's value under its type's metric (None: 0/1 is_correct)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_perfect(metric: str, value: float) -> bool:
    return value == (0.0 if metric == WER else 1.0)


def score_item(item: BenchmarkItem, text: str) -> ScoredRow:
    """Score one completion (the rewards' parser: strict tags, ambiguous answers unreadable):
    multiple choice by its letter (``score_completion``), the other types by ``eval_value`` of the
    closed answer block. An unknown type is a ValueError (``load_benchmark`` counts those aside)."""
    r, kind = item.record, item_type(item.record)
    if kind == MULTIPLE_CHOICE:
        b = score_completion(text, r.answer, r.options, mode=r.mode)
        parsed, value, fmt = b.choice, b.accuracy_reward, b.format_reward
    elif is_scorable(kind):
        parts = split_completion(text)
        parsed = parts.answer if parts.is_answer_closed else None
        value, fmt = eval_value(kind, parsed, r.answer), format_reward(text, r.mode)
    else:
        raise ValueError(f"record {r.id}: problem_type {kind!r} has no eval metric")
    return ScoredRow(
        id=r.id,
        task=item.task,
        question=r.question,
        video=r.video or r.image,
        options=dict(r.options),
        completion=text,
        parsed=parsed,
        answer=r.answer,
        is_correct=_is_perfect(EVAL_METRICS[kind], value),
        format_ok=fmt > 0,
        problem_type=kind,
        value=value,
    )


def score_items(items: Sequence[BenchmarkItem], completions: Sequence[str]) -> list[ScoredRow]:
    """:func:`score_item` of each item's completion, in order."""
    if len(items) != len(completions):
        raise ValueError(f"{len(items)} records but {len(completions)} completions")
    return [score_item(item, text) for item, text in zip(items, completions, strict=True)]


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
    """Accuracy, format and unreadable rates of the rows whose metric is accuracy (the headline:
    multiple choice and numerical); the answer distribution of the multiple-choice ones."""
    rows = [r for r in rows if EVAL_METRICS.get(r.problem_type) == ACCURACY]
    n = len(rows)
    correct = sum(r.is_correct for r in rows)
    low, high = wilson_interval(correct, n)
    dist = Counter(r.parsed or NO_ANSWER for r in rows if r.problem_type == MULTIPLE_CHOICE)
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
class TypeStats:
    """One problem type's result (over all tasks: ``task`` None): the mean of its metric and the
    interval of the module docstring (None where there is none)."""

    type: str
    n: int
    metric: str
    value: float
    interval: tuple[float, float] | None
    task: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"type", "n", "metric", "value", "interval"}`` (``"task"`` first when set)."""
        doc = {"type": self.type, "n": self.n, "metric": self.metric, "value": self.value}
        doc["interval"] = list(self.interval) if self.interval is not None else None
        return {"task": self.task, **doc} if self.task is not None else doc


def _type_order(kind: str) -> tuple[int, str]:
    return (PROBLEM_TYPES.index(kind) if kind in PROBLEM_TYPES else len(PROBLEM_TYPES), kind)


def type_stats(scored: Sequence[tuple[str, float]], task: str | None = None) -> list[TypeStats]:
    """Per-type results of ``(problem type, value)`` pairs, types in ``PROBLEM_TYPES`` order.

    Accuracy types take 0/1 values and a Wilson interval; the others the normal interval of
    :func:`mean_interval`. A type without a metric is a ValueError.

    >>> [stats] = type_stats([("OCR", 0.5), ("OCR", 0.7)])  # s = 0.1414: 0.6 ± 1.96·0.1414/√2
    >>> stats.type, stats.n, stats.metric, stats.value, [round(x, 4) for x in stats.interval]
    ('OCR', 2, 'wer', 0.6, [0.404, 0.796])
    """
    by_type: dict[str, list[float]] = {}
    for kind, value in scored:
        by_type.setdefault(kind, []).append(float(value))
    out = []
    for kind in sorted(by_type, key=_type_order):
        values, metric = by_type[kind], EVAL_METRICS.get(kind)
        if metric is None:
            raise ValueError(f"problem_type {kind!r} has no eval metric")
        n = len(values)
        if metric == ACCURACY:
            interval: tuple[float, float] | None = wilson_interval(sum(v > 0 for v in values), n)
        else:
            interval = mean_interval(values, high=math.inf if metric == WER else 1.0)
        out.append(TypeStats(kind, n, metric, math.fsum(values) / n, interval, task))
    return out


def _row_pairs(rows: Sequence[ScoredRow]) -> list[tuple[str, float]]:
    return [(r.problem_type, r.value if r.value is not None else float(r.is_correct)) for r in rows]


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything ``vgrpo eval --json`` writes and the run database stores with an evaluation."""

    overall: TaskStats
    per_task: list[TaskStats]
    skipped: dict[str, int]
    rows: list[ScoredRow]
    per_type: list[TypeStats] = field(default_factory=list)
    per_task_type: list[TypeStats] = field(default_factory=list)  # tasks by name, types in order

    def summary(self) -> dict[str, Any]:
        """The JSON object of ``--json`` without the per-record rows."""
        keys = ("n", "accuracy", "ci_low", "ci_high", "format_rate", "unparseable_rate")
        overall = {k: getattr(self.overall, k) for k in keys}
        return {
            "overall": overall,
            "per_task": [{"task": t.task, **{k: getattr(t, k) for k in keys}} for t in self.per_task],
            "per_type": [s.to_dict() for s in self.per_type],
            "per_task_type": [s.to_dict() for s in self.per_task_type],
            "answer_distribution": dict(self.overall.answer_distribution),
            "per_task_answer_distribution": {t.task: dict(t.answer_distribution) for t in self.per_task},
            "skipped": dict(self.skipped),
        }


def summarize(rows: Sequence[ScoredRow], skipped: Mapping[str, int] | None = None) -> BenchmarkReport:
    """Overall, per-task (tasks sorted by name) and per-type statistics of scored rows."""
    by_task: dict[str, list[ScoredRow]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row)
    has_accuracy = {t for t, group in by_task.items() if any(_is_accuracy(r) for r in group)}
    return BenchmarkReport(
        overall=task_stats("overall", rows),
        per_task=[task_stats(task, by_task[task]) for task in sorted(has_accuracy)],
        skipped=dict(sorted((skipped or {}).items())),
        rows=list(rows),
        per_type=type_stats(_row_pairs(rows)),
        per_task_type=[s for t in sorted(by_task) for s in type_stats(_row_pairs(by_task[t]), task=t)],
    )


def _is_accuracy(row: ScoredRow) -> bool:
    return EVAL_METRICS.get(row.problem_type) == ACCURACY


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
        if item_type(r) != MULTIPLE_CHOICE:  # multiple choice keeps the fingerprints stored before
            doc.append(item_type(r))
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


def stored_type(row: Mapping[str, Any]) -> str:
    """The problem type of a stored result row; rows stored before types existed are multiple choice."""
    return str(row.get("problem_type") or MULTIPLE_CHOICE)


def stored_type_stats(rows: Sequence[Mapping[str, Any]]) -> list[TypeStats]:
    """:func:`type_stats` of stored result rows (``ScoredRow.to_dict`` or training's evaluation
    rows): each row's ``value``, else its ``is_correct`` as 0/1 (rows from before ``value``)."""
    pairs = []
    for row in rows:
        value = row.get("value")
        pairs.append((stored_type(row), float(value if value is not None else bool(row.get("is_correct")))))
    return type_stats(pairs)
