"""Rewards for video multiple-choice answers: is the completion well formed, and is its choice right.

Pure functions, strings in and floats out (no model, no I/O), so the trainer, the evaluator and the
studio's chat score a completion the same way. The shapes follow ``trainer.data.prompts``:

- think mode: ``<think>reasoning</think> <answer>(B) text</answer>``
- no_think mode: ``<answer>(B) text</answer>``

Choices made here (tests pin each one):

- Tags are matched exactly and case-sensitively (``<Answer>`` is plain text).
- The format reward is strict (see :func:`format_reward`); the accuracy reward is not: it reads the
  first ``<answer>`` block even when the format is wrong, so the two signals stay separate.
- Without an ``<answer>…</answer>`` block the accuracy is 0.0. We do NOT fall back to the last line
  of the completion: a fallback would pay the policy for skipping the tag the format reward asks for,
  and would read letters out of the reasoning.
- An answer naming two different options (``A or B``, ``(A) and (B)``, text shared by two options)
  is ambiguous and scores 0.0, so hedging never pays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from trainer.data.prompts import NO_THINK, THINK

__all__ = [
    "NO_THINK",
    "THINK",
    "ParsedCompletion",
    "RewardBreakdown",
    "accuracy_reward",
    "extract_choice",
    "format_reward",
    "parse_completion",
    "score_completion",
]

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# Whole-completion shapes; tag counts are checked separately so nested or repeated tags cannot hide
# inside a group.
_THINK_SHAPE = re.compile(r"\s*<think>.*</think>\s*<answer>(.*)</answer>\s*", re.DOTALL)
_NO_THINK_SHAPE = re.compile(r"\s*<answer>(.*)</answer>\s*", re.DOTALL)
# Anything that is not a letter or digit separates words when option texts are compared.
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class ParsedCompletion:
    """The inner texts of the first ``<think>`` and ``<answer>`` blocks, stripped (None: no such block)."""

    think: str | None
    answer: str | None


@dataclass(frozen=True)
class RewardBreakdown:
    """Everything one completion was scored on, as the run DB stores it."""

    format_reward: float
    accuracy_reward: float
    total_reward: float
    think: str | None
    answer: str | None
    choice: str | None


def _check_mode(mode: str) -> None:
    if mode not in (THINK, NO_THINK):
        raise ValueError(f"mode must be {THINK!r} or {NO_THINK!r}, got {mode!r}")


def parse_completion(completion: str) -> ParsedCompletion:
    """Split a completion into its reasoning and its answer.

    The first complete block of each tag is taken (the Video-R1/EasyR1 ``re.search`` convention);
    the format reward, not this parser, is what punishes repeated blocks.

    >>> parse_completion("<think> it moves left </think>\\n<answer>(B) left</answer>")
    ParsedCompletion(think='it moves left', answer='(B) left')
    >>> parse_completion("The answer is B")
    ParsedCompletion(think=None, answer=None)
    """
    think = _THINK_BLOCK.search(completion)
    answer = _ANSWER_BLOCK.search(completion)
    return ParsedCompletion(
        think=think.group(1).strip() if think else None,
        answer=answer.group(1).strip() if answer else None,
    )


def format_reward(completion: str, mode: str = THINK) -> float:
    """1.0 when the completion has exactly the shape the prompt asks for, else 0.0.

    think mode: one ``<think>…</think>`` block, then one ``<answer>…</answer>`` block, and only
    whitespace before, between and after them. The reasoning may be empty (an empty think block is
    still the asked-for shape); the answer may not. no_think mode: one ``<answer>…</answer>`` block
    and only whitespace around it; any ``<think>`` tag scores 0. In both modes a tag may appear once
    only, so nested or repeated blocks score 0.

    >>> format_reward("<think>the ball bounces</think> <answer>(A) bounce</answer>")
    1.0
    >>> format_reward("<answer>(A) bounce</answer>", mode="no_think")
    1.0
    >>> format_reward("<answer>(A) bounce</answer>")
    0.0
    >>> format_reward("<think>x</think> <answer>(A)</answer> Done.")
    0.0
    """
    _check_mode(mode)
    counts = {tag: completion.count(tag) for tag in _TAGS}
    want_think = 1 if mode == THINK else 0
    if counts != {"<think>": want_think, "</think>": want_think, "<answer>": 1, "</answer>": 1}:
        return 0.0
    shape = _THINK_SHAPE if mode == THINK else _NO_THINK_SHAPE
    match = shape.fullmatch(completion)
    if match is None or not match.group(1).strip():
        return 0.0
    return 1.0


def _normalize(text: str) -> str:
    """Case-, space- and punctuation-insensitive form: ``" Apples. "`` -> ``"apples"``,
    ``"Al-Dosari"`` -> ``"al dosari"``. Punctuation becomes a space rather than vanishing, so
    ``"10.0"`` and ``"100"`` stay different."""
    return _NON_WORD.sub(" ", text).strip().casefold()


def _letter_pattern(letters: list[str]) -> re.Pattern[str]:
    # Longest first so a key like "AA" is not read as "A".
    alternatives = "|".join(re.escape(letter) for letter in sorted(letters, key=len, reverse=True))
    return re.compile(
        rf"\(\s*(?P<paren>{alternatives})\s*\)\s*[.:]?"  # (B)  (B).  (B): …
        rf"|(?P<marked>{alternatives})\s*[.:)]"  # B.  B)  B: …
        rf"|(?P<bare>{alternatives})$"  # B
    )


def _options_matching(text: str, options: Mapping[str, str]) -> set[str]:
    wanted = _normalize(text)
    if not wanted:
        return set()
    return {letter for letter, option in options.items() if _normalize(option) == wanted}


def extract_choice(answer: str, options: Mapping[str, str]) -> str | None:
    """The option letter an answer names, or None when it names none or more than one.

    Read, in order:

    1. A leading letter of ``options`` in one of the forms ``B``, ``(B)``, ``B.``, ``B)``, ``B:``,
       optionally followed by text (``(B) Collision``, ``B: x``). Letters are matched as the keys
       are written (upper case): a lowercase ``a`` is a word, not a letter. The letter is the
       choice, except that the text after it must not contradict it: if that text is exactly some
       options' text but not the letter's own, if the whole answer is exactly another option's
       text, or if the text carries another option's letter marker (``(A) or (B)``), the answer
       is ambiguous.
    2. Otherwise the whole answer compared with each option's text, ignoring case, spacing and
       punctuation; exactly one option must match.

    >>> options = {"A": "Rolls left", "B": "Collision", "C": "Stays still"}
    >>> [extract_choice(a, options) for a in ["(B)", "B", "B.", "B)", "(B) Collision", "B: x"]]
    ['B', 'B', 'B', 'B', 'B', 'B']
    >>> extract_choice("  collision! ", options)
    'B'
    >>> print(extract_choice("(A) or (B)", options), extract_choice("(A) Collision", options))
    None None
    >>> print(extract_choice("E", options), extract_choice("The answer is B", options))
    None None
    """
    answer = answer.strip()
    letters = list(options)
    if not answer or not letters:
        return None
    pattern = _letter_pattern(letters)
    match = pattern.match(answer)
    if match is None:
        named = _options_matching(answer, options)
        return named.pop() if len(named) == 1 else None

    letter = match.group("paren") or match.group("marked") or match.group("bare")
    rest = answer[match.end() :].strip()
    if not _normalize(rest):
        # Nothing or only punctuation after the letter ("(B)", "(B) -"): the letter alone decides.
        return letter
    named = _options_matching(rest, options)
    if named:
        # The letter picks among options that share the same text; text of only other options
        # contradicts it.
        return letter if letter in named else None
    whole = _options_matching(answer, options)
    if whole and letter not in whole:
        # "A.I. research" may be option C's text rather than "(A) I. research".
        return None
    others = [other for other in letters if other != letter]
    if others and _names_another_letter(rest, others):
        return None
    return letter


def _names_another_letter(text: str, others: list[str]) -> bool:
    """Does free text carry another option's marker: ``(C)`` anywhere, or ``C.``/``C)``/``C:`` as a
    word? A bare capital (``A ball``) is a word, not a marker."""
    alternatives = "|".join(re.escape(letter) for letter in sorted(others, key=len, reverse=True))
    marker = re.compile(rf"\(\s*(?:{alternatives})\s*\)|(?<!\w)(?:{alternatives})[.:)](?!\w)")
    return marker.search(text) is not None


def accuracy_reward(completion: str, correct: str, options: Mapping[str, str]) -> float:
    """1.0 when the first ``<answer>`` block names exactly the ``correct`` option, else 0.0.

    No ``<answer>`` block scores 0.0: the last line is deliberately not used as a fallback (see the
    module docstring). ``correct`` must be one of the option letters.

    >>> options = {"A": "left", "B": "right"}
    >>> accuracy_reward("<think>…</think> <answer>(B) right</answer>", "B", options)
    1.0
    >>> accuracy_reward("It goes right, so B", "B", options)
    0.0
    """
    if correct not in options:
        raise ValueError(f"correct answer {correct!r} is not one of the options {', '.join(options)}")
    answer = parse_completion(completion).answer
    if answer is None:
        return 0.0
    return 1.0 if extract_choice(answer, options) == correct else 0.0


def score_completion(
    completion: str,
    correct: str,
    options: Mapping[str, str],
    mode: str = THINK,
    format_weight: float = 0.3,
    accuracy_weight: float = 0.7,
) -> RewardBreakdown:
    """Both rewards and their weighted sum ``format_weight*format + accuracy_weight*accuracy``.

    >>> score = score_completion("<answer>(A) left</answer>", "A", {"A": "left", "B": "right"})
    >>> score.format_reward, score.accuracy_reward, score.total_reward, score.choice
    (0.0, 1.0, 0.7, 'A')
    """
    _check_mode(mode)
    if correct not in options:
        raise ValueError(f"correct answer {correct!r} is not one of the options {', '.join(options)}")
    parsed = parse_completion(completion)
    choice = extract_choice(parsed.answer, options) if parsed.answer is not None else None
    fmt = format_reward(completion, mode)
    acc = 1.0 if choice == correct else 0.0
    return RewardBreakdown(
        format_reward=fmt,
        accuracy_reward=acc,
        total_reward=format_weight * fmt + accuracy_weight * acc,
        think=parsed.think,
        answer=parsed.answer,
        choice=choice,
    )
