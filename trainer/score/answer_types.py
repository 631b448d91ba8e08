"""Accuracy rewards and eval metrics for the answers that are not an option letter: numbers, read
text, free text and estimates (the problem types of ``trainer.data.problem_types``).

Pure functions, strings in and floats out (no model, no I/O). ``answer`` is the text inside the
completion's closed ``<answer>`` block (``trainer.score.rewards.split_completion``), ``reference``
the record's reference answer. Training's accuracy reward for these types is
:func:`answer_reward`; ``vgrpo eval`` reports :func:`eval_value` under the metric of
:data:`EVAL_METRICS`. Multiple choice is scored by its option letter in ``trainer.score.rewards``.

The rewards are Video-R1's (Feng et al., 2025, ``src/r1-v/src/open_r1/grpo.py``, ``accuracy_reward``)
and give its numbers (tests/score/test_answer_types.py checks them against a transcription):

=============  ================================================================  =================
type           reward                                                            eval metric
=============  ================================================================  =================
numerical      1 if round(a, 2) == round(r, 2), 0 if only one has a "." or ","   accuracy
OCR            clip(1 - WER(r, a), 0, 1)                                         WER (lower better)
free-form      clip((ROUGE-1 F + ROUGE-2 F + ROUGE-L F) / 3, 0, 1)               the same ROUGE
regression     1 - clip((|a - r| + 1e-9) / (|r| + 1e-9), 0, 1)                   MRA (VSI-Bench)
=============  ================================================================  =================

Choices made here (tests pin each one):

- No closed answer block (``answer is None``) scores the worst value: reward 0.0, WER 1.0 (every
  reference word missed), ROUGE 0.0, MRA 0.0. An answer that is not a number scores 0 for the number
  types, where Video-R1's ``try``/``except`` gives 0 too.
- Numbers are read by ``parse_number`` (Video-R1's ``normalize_number``: thousands commas dropped,
  then ``float``), which also refuses NaN and infinities: Video-R1 paid 1.0 for ``inf`` against ``inf``.
- A reference that is no number (numerical, regression) or holds no word (OCR) is a ValueError:
  ``check_reference`` refuses such records when they load, so one here is a bug, not an answer.
- Regression's one departure from Video-R1: when the reference is 0, the exact answer 0 scores 1.0
  (Video-R1's epsilons give (0 + 1e-9) / (0 + 1e-9) = 1, so reward 0 even for the right answer).
"""

from __future__ import annotations

import functools
from typing import Any

from trainer.data.problem_types import (
    FREE_FORM,
    MULTIPLE_CHOICE,
    NUMERICAL,
    OCR,
    PROBLEM_TYPES,
    REGRESSION,
    parse_number,
)

__all__ = [
    "ACCURACY",
    "EVAL_METRICS",
    "MRA",
    "ROUGE",
    "WER",
    "answer_reward",
    "eval_value",
    "free_form_reward",
    "mean_relative_accuracy",
    "numerical_reward",
    "ocr_reward",
    "regression_reward",
    "rouge_f",
    "word_error_rate",
]

ACCURACY = "accuracy"
WER = "wer"
ROUGE = "rouge"
MRA = "mra"
# The per-item value ``vgrpo eval`` averages for each problem type. WER is reported as it is (lower
# is better); the others are higher-is-better in [0, 1].
EVAL_METRICS = {
    MULTIPLE_CHOICE: ACCURACY,
    NUMERICAL: ACCURACY,
    OCR: WER,
    FREE_FORM: ROUGE,
    REGRESSION: MRA,
}
# Video-R1 keeps this epsilon in regression's relative difference (see regression_reward).
_REGRESSION_EPS = 1e-9
# MRA's confidence thresholds theta = 0.50, 0.55, ..., 0.95, in hundredths so the comparison with
# 1 - theta is exact (1 - 0.9 is 0.09999999999999998 in floating point).
_MRA_THETAS_PERCENT = range(50, 100, 5)


def _has_decimal_mark(text: str) -> bool:
    return "." in text or "," in text


def _reference_number(problem_type: str, reference: str) -> float:
    value = parse_number(reference)
    if value is None:
        raise ValueError(f"a {problem_type} reference must be a number, got {reference[:40]!r}")
    return value


def numerical_reward(answer: str, reference: str) -> float:
    """1.0 when the answer is the reference number to two decimals, else 0.0 (Video-R1).

    An answer with a decimal mark (``.`` or ``,``) against a reference without one, or the other way
    round, is 0.0 before any number is read: ``"3.0"`` is not the asked-for ``3``. As in Video-R1 a
    thousands comma counts as such a mark, so ``"1,000"`` against ``"1000"`` is 0.0 too.

    >>> numerical_reward("42", "42"), numerical_reward("3.14159", "3.14"), numerical_reward("3.0", "3")
    (1.0, 1.0, 0.0)
    >>> numerical_reward("forty-two", "42"), numerical_reward("3.15", "3.14")
    (0.0, 0.0)
    """
    wanted = _reference_number(NUMERICAL, reference)
    if _has_decimal_mark(answer) != _has_decimal_mark(reference):
        return 0.0
    given = parse_number(answer)
    if given is None:
        return 0.0
    return 1.0 if round(given, 2) == round(wanted, 2) else 0.0


def _words(text: str) -> str:
    """Words separated by single spaces: Video-R1 splits on any whitespace, jiwer on spaces only."""
    return " ".join(text.split())


def word_error_rate(answer: str, reference: str) -> float:
    """Word error rate (substitutions + deletions + insertions) / reference words, by ``jiwer.wer``.

    Words are split on any whitespace and compared exactly (case and punctuation count, as in
    Video-R1's hand-written ``wer``). An empty answer deletes every reference word: WER 1.0. The
    rate has no upper bound (insertions), and a reference without a word is a ValueError (it has no
    rate; references are never empty, ``check_reference``).

    >>> round(word_error_rate("a x c", "a b c"), 6), word_error_rate("", "a b")
    (0.333333, 1.0)
    """
    import jiwer

    ref = _words(reference)
    if not ref:
        raise ValueError("an OCR reference must hold at least one word, got an empty one")
    hyp = _words(answer)
    if not hyp:
        return 1.0  # jiwer's own answer too; spelled out so no jiwer version can raise on it
    return float(jiwer.wer(ref, hyp))


def ocr_reward(answer: str, reference: str) -> float:
    """``clip(1 - WER, 0, 1)`` (:func:`word_error_rate`): the exact transcript 1.0, an empty one 0.0.

    >>> round(ocr_reward("STOP here", "STOP there"), 6), ocr_reward("", "STOP")
    (0.5, 0.0)
    """
    return min(1.0, max(0.0, 1.0 - word_error_rate(answer, reference)))


@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    # Built once (it loads the Porter stemmer); imported here so loading this module stays light.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_f(answer: str, reference: str) -> float:
    """Mean of the ROUGE-1, ROUGE-2 and ROUGE-L F-measures (Lin 2004) with Porter stemming, as
    Video-R1's ``compute_rouge_score``. ``rouge_score`` lowercases and keeps only letters and digits,
    so case and punctuation do not count; an empty answer (or one without a word) scores 0.0.

    >>> round(rouge_f("the cat ran", "the cat sat"), 6)  # (2/3 + 1/2 + 2/3) / 3
    0.611111
    """
    scores = _rouge_scorer().score(reference, answer)
    return (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3


def free_form_reward(answer: str, reference: str) -> float:
    """:func:`rouge_f` clipped to [0, 1] (Video-R1 clips it; an F-measure never leaves it anyway).

    >>> free_form_reward("A man opens the door.", "a man opens the door"), free_form_reward("", "x")
    (1.0, 0.0)
    """
    return min(1.0, max(0.0, rouge_f(answer, reference)))


def regression_reward(answer: str, reference: str) -> float:
    """``1 - clip(rel, 0, 1)`` with ``rel = (|a - r| + 1e-9) / (|r| + 1e-9)`` (Video-R1).

    Linear in the relative error: off by 10 % scores 0.9, off by 100 % or more 0.0. The epsilon is
    Video-R1's, so the exact answer scores ``1 - 1e-9 / (|r| + 1e-9)``, a hair under 1, except for
    r = 0 where the exact answer scores 1.0 (Video-R1 gives it 0: see the module docstring). An answer
    that is no number scores 0.0.

    >>> round(regression_reward("9", "10"), 6), regression_reward("30", "10"), regression_reward("x", "1")
    (0.9, 0.0, 0.0)
    """
    wanted = _reference_number(REGRESSION, reference)
    given = parse_number(answer)
    if given is None:
        return 0.0
    if wanted == 0 and given == 0:
        return 1.0
    rel = (abs(given - wanted) + _REGRESSION_EPS) / (abs(wanted) + _REGRESSION_EPS)
    return 1.0 - min(1.0, max(0.0, rel))


def mean_relative_accuracy(answer: str, reference: str) -> float:
    """VSI-Bench's Mean Relative Accuracy (Yang et al., 2024, "Thinking in Space", eq. 1):

        MRA = 1/10 * sum over theta in {0.50, 0.55, ..., 0.95} of 1[ |a - r| / |r| < 1 - theta ]

    so an answer within 5 % of the reference scores 1.0 (0.9 at exactly 5 %), within 50 % something,
    and 50 % off or worse 0.0. Choices:

    - The comparison is the paper's strict ``<``, decided exactly: both sides are scaled by 100 so
      the thresholds 1 - theta are whole hundredths (``100|a - r| < (100 - 100 theta) |r|``). The
      official lmms-eval code writes ``<=`` and Video-R1's eval float32 ``<``; both then decide a tie
      such as 9 against 10 at theta = 0.9 by rounding, either way.
    - ``r = 0``: the relative error is undefined (VSI-Bench's references are counts, sizes and
      distances, never 0). The exact answer 0 scores 1.0 and any other 0.0, the limit of the
      relative error and what Video-R1's eval gives with its ``|r| + 1e-8``.
    - An answer that is no number scores 0.0 (VSI-Bench's ``WORST_CASE_FOR_METRICS``).

    >>> mean_relative_accuracy("9", "10"), mean_relative_accuracy("10", "10")
    (0.8, 1.0)
    >>> mean_relative_accuracy("7", "10"), mean_relative_accuracy("5", "10")
    (0.4, 0.0)
    """
    wanted = _reference_number(REGRESSION, reference)
    given = parse_number(answer)
    if given is None:
        return 0.0
    if wanted == 0:
        return 1.0 if given == 0 else 0.0
    error = 100 * abs(given - wanted)
    passed = sum(error < (100 - theta) * abs(wanted) for theta in _MRA_THETAS_PERCENT)
    return passed / len(_MRA_THETAS_PERCENT)


_REWARDS = {
    NUMERICAL: numerical_reward,
    OCR: ocr_reward,
    FREE_FORM: free_form_reward,
    REGRESSION: regression_reward,
}
_EVAL_VALUES = {
    NUMERICAL: numerical_reward,
    OCR: word_error_rate,
    FREE_FORM: rouge_f,
    REGRESSION: mean_relative_accuracy,
}
# What eval_value gives for no closed answer block: the worst value of each metric.
_NO_ANSWER_VALUE = {NUMERICAL: 0.0, OCR: 1.0, FREE_FORM: 0.0, REGRESSION: 0.0}


def _check_type(problem_type: str) -> None:
    if problem_type == MULTIPLE_CHOICE:
        raise ValueError("multiple choice is scored by its option letter (trainer.score.rewards), not here")
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type {problem_type!r} is unknown (one of: {', '.join(PROBLEM_TYPES)})")


def answer_reward(problem_type: str, answer: str | None, reference: str) -> float:
    """Training's accuracy reward of a non-multiple-choice answer, in [0, 1] (table in the module
    docstring). ``answer`` None (no closed answer block) scores 0.0. ``problem_type`` in Video-R1's
    spelling (``trainer.data.problem_types``); multiple choice or an unknown type is a ValueError.

    >>> answer_reward("numerical", "4", "4"), answer_reward("OCR", None, "STOP")
    (1.0, 0.0)
    """
    _check_type(problem_type)
    if answer is None:
        return 0.0
    return _REWARDS[problem_type](answer, reference)


def eval_value(problem_type: str, answer: str | None, reference: str) -> float:
    """One answer's value under its type's eval metric (:data:`EVAL_METRICS`): numerical 0/1
    accuracy, OCR the word error rate itself (lower is better, not 1 - WER), free-form the mean
    ROUGE F, regression MRA. ``answer`` None scores the metric's worst value (WER 1.0, else 0.0).

    >>> eval_value("OCR", "a x c", "a b c") == 1 / 3, eval_value("regression", "9", "10")
    (True, 0.8)
    """
    _check_type(problem_type)
    if answer is None:
        return _NO_ANSWER_VALUE[problem_type]
    return _EVAL_VALUES[problem_type](answer, reference)
