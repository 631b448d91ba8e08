"""Rewards for video question answers: is the completion well formed, and is its answer right.

Multiple choice is scored here by the option letter; the other problem types (numerical, OCR,
free-form, regression) read the same closed answer block and score it with their own measure
(``trainer.score.answer_types``), so every type shares one parser and one format reward.

Pure functions, strings in and floats out (no model, no I/O), so the trainer, the evaluator and the
studio's chat score a completion the same way. The shapes follow ``trainer.data.prompts``:

- think mode: ``<think>reasoning</think> <answer>(B) text</answer>``
- no_think mode: ``<answer>(B) text</answer>``

Choices made here (tests pin each one):

- Tags are matched exactly and case-sensitively (``<Answer>`` is plain text).
- One parser, :func:`split_completion`, cuts every completion into its blocks, and
  :func:`read_choice` reads the chosen letter from it; the accuracy reward, the evaluator (through
  :func:`score_completion`) and the studio's chat verdict all call these two, so they never
  disagree about what a completion chose.
- Blocks are read left to right and never nest: the first ``<think>`` or ``<answer>`` tag opens a
  block that runs to its own closing tag, or to the end of the text when that never comes; tags
  inside a block are its text. The chosen letter comes from the first answer block outside the think
  block, and only when its ``</answer>`` is there: the tags the format reward asks for. So
  ``<think>r</think> <answer>(B) x`` (cut off) chooses nothing, ``<think>hmm <answer>(B)</answer>``
  (think never closed) chooses nothing (the answer is still reasoning), and
  ``<answer>(B)</answer><think>r</think>`` chooses B.
- The format reward is strict (see :func:`format_reward`); the accuracy reward is not: it reads the
  answer block even when the order or the text around the blocks is wrong, so the two signals stay
  separate.
- Without a closed ``<answer>…</answer>`` block the accuracy is 0.0. We do NOT fall back to the last
  line of the completion: a fallback would pay the policy for skipping the tag the format reward asks
  for, and would read letters out of the reasoning.
- An answer naming two different options (``A or B``, ``(A) and (B)``, text shared by two options)
  is ambiguous and scores 0.0, so hedging never pays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.data.prompts import NO_THINK, THINK
from trainer.score.answer_types import answer_reward

__all__ = [
    "NO_THINK",
    "THINK",
    "AnswerChoice",
    "CompletionParts",
    "ParsedCompletion",
    "RewardBreakdown",
    "accuracy_reward",
    "extract_choice",
    "format_reward",
    "parse_completion",
    "read_choice",
    "record_accuracy",
    "score_completion",
    "split_completion",
]

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_OPENING_TAG = re.compile(r"<(think|answer)>")
# Whole-completion shapes; tag counts are checked separately so nested or repeated tags cannot hide
# inside a group.
_THINK_SHAPE = re.compile(r"\s*<think>.*</think>\s*<answer>(.*)</answer>\s*", re.DOTALL)
_NO_THINK_SHAPE = re.compile(r"\s*<answer>(.*)</answer>\s*", re.DOTALL)
# Anything that is not a letter or digit separates words when option texts are compared.
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class CompletionParts:
    """A completion cut at its first think block and its first answer block (:func:`split_completion`).

    Also for a completion still streaming: a block whose closing tag has not come runs to the end of
    the text, and ``is_think_closed`` / ``is_answer_closed`` say whether it closed.
    """

    think: str | None  # inside the first think block, stripped (None: no think block)
    answer: str | None  # inside the first answer block outside the think block, stripped
    other: str  # the text outside both blocks (repeated blocks, stray tags), pieces joined by a space
    is_think_closed: bool
    is_answer_closed: bool


@dataclass(frozen=True)
class ParsedCompletion:
    """The inner texts of the first closed ``<think>`` and ``<answer>`` blocks, stripped (None: no
    such closed block)."""

    think: str | None
    answer: str | None


@dataclass(frozen=True)
class AnswerChoice:
    """What a completion chose (:func:`read_choice`), and why not when it chose nothing."""

    answer: str | None  # the closed answer block's text, stripped (None: no closed answer block)
    letter: str | None  # the option the answer names (None: none, or more than one)
    why_none: str | None  # for people: why ``letter`` is None ("<answer> not closed"); None with a letter


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


def split_completion(text: str) -> CompletionParts:
    """Cut a (possibly still streaming) completion into its think block, answer block and the rest.

    Read left to right, blocks never nest: the first ``<think>`` or ``<answer>`` tag opens a block that
    runs to its own closing tag, or to the end of the text when that never comes (still streaming,
    cut off at the token limit, or ended without it). Tags inside a block are its text, so an
    ``<answer>`` written inside the reasoning is reasoning. After a block closes the next opening tag
    starts the next block; only the first block of each kind counts (the Video-R1/EasyR1 ``re.search``
    convention), later ones are ``other`` text, and the format reward, not this parser, punishes them.

    >>> parts = split_completion("<think>it moves</think> <answer>(A) left")
    >>> parts.think, parts.answer, parts.is_think_closed, parts.is_answer_closed
    ('it moves', '(A) left', True, False)
    >>> split_completion("<think>hmm <answer>(A)</answer>").answer is None
    True
    """
    blocks: dict[str, tuple[str, bool]] = {}
    other: list[str] = []
    pos = 0
    while (opening := _OPENING_TAG.search(text, pos)) is not None:
        other.append(text[pos : opening.start()])
        kind, closing = opening.group(1), f"</{opening.group(1)}>"
        close_at = text.find(closing, opening.end())
        is_closed = close_at >= 0
        end = close_at + len(closing) if is_closed else len(text)
        if kind in blocks:
            other.append(text[opening.start() : end])
        else:
            blocks[kind] = (text[opening.end() : close_at if is_closed else end], is_closed)
        pos = end
    other.append(text[pos:])
    think, is_think_closed = blocks.get("think", (None, False))
    answer, is_answer_closed = blocks.get("answer", (None, False))
    return CompletionParts(
        think=think.strip() if think is not None else None,
        answer=answer.strip() if answer is not None else None,
        other=" ".join(part.strip() for part in other if part.strip()),
        is_think_closed=is_think_closed,
        is_answer_closed=is_answer_closed,
    )


def parse_completion(completion: str) -> ParsedCompletion:
    """The reasoning and the answer of a finished completion: the closed blocks of
    :func:`split_completion` (a block never closed is None).

    >>> parse_completion("<think> it moves left </think>\\n<answer>(B) left</answer>")
    ParsedCompletion(think='it moves left', answer='(B) left')
    >>> parse_completion("The answer is B")
    ParsedCompletion(think=None, answer=None)
    """
    return _closed_blocks(split_completion(completion))


def _closed_blocks(parts: CompletionParts) -> ParsedCompletion:
    return ParsedCompletion(
        think=parts.think if parts.is_think_closed else None,
        answer=parts.answer if parts.is_answer_closed else None,
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


def read_choice(completion: str, options: Mapping[str, str]) -> AnswerChoice:
    """The option a completion chose: its closed answer block (:func:`split_completion`) read by
    :func:`extract_choice`, and, when it chose none, why, in words a person reads under the answer.

    >>> options = {"A": "left", "B": "right"}
    >>> read_choice("<think>r</think> <answer>(B) right</answer>", options)
    AnswerChoice(answer='(B) right', letter='B', why_none=None)
    >>> read_choice("<think>it moves right</think> <answer>(B) right", options).why_none
    '<answer> not closed'
    """
    return _choice_of(split_completion(completion), options)


def _choice_of(parts: CompletionParts, options: Mapping[str, str]) -> AnswerChoice:
    if parts.is_answer_closed:
        letter = extract_choice(parts.answer or "", options)
        if letter is not None:
            why = None
        elif not parts.answer:
            why = "the answer is empty"
        else:
            why = "the answer names no option, or more than one"
        return AnswerChoice(answer=parts.answer, letter=letter, why_none=why)
    if parts.answer is not None:
        why = "<answer> not closed"
    elif parts.think is not None and not parts.is_think_closed:
        # Whatever followed the open <think> (an <answer> block too) is still reasoning.
        why = "<think> not closed"
    elif "<answer>" in (parts.think or "") + parts.other:
        why = "<answer> only inside <think>"
    else:
        why = "no <answer> tag"
    return AnswerChoice(answer=None, letter=None, why_none=why)


def accuracy_reward(completion: str, correct: str, options: Mapping[str, str]) -> float:
    """1.0 when the completion's choice (:func:`read_choice`) is exactly the ``correct`` option, else 0.0.

    No closed ``<answer>`` block scores 0.0: the last line is deliberately not used as a fallback (see
    the module docstring). ``correct`` must be one of the option letters.

    >>> options = {"A": "left", "B": "right"}
    >>> accuracy_reward("<think>…</think> <answer>(B) right</answer>", "B", options)
    1.0
    >>> accuracy_reward("It goes right, so B", "B", options)
    0.0
    """
    if correct not in options:
        raise ValueError(f"correct answer {correct!r} is not one of the options {', '.join(options)}")
    return 1.0 if read_choice(completion, options).letter == correct else 0.0


def record_accuracy(completion: str, record: object) -> float:
    """The accuracy reward of one completion against its record, whatever the record's problem type:
    the option letter for multiple choice (:func:`accuracy_reward`), the type's measure of the closed
    answer block for the others (:func:`trainer.score.answer_types.answer_reward`)."""
    problem_type = getattr(record, "problem_type", MULTIPLE_CHOICE)
    if problem_type == MULTIPLE_CHOICE:
        return accuracy_reward(completion, record.answer, record.options)  # type: ignore[attr-defined]
    parts = split_completion(completion)
    return answer_reward(problem_type, parts.answer if parts.is_answer_closed else None, record.answer)  # type: ignore[attr-defined]


def score_completion(
    completion: str,
    correct: str,
    options: Mapping[str, str],
    mode: str = THINK,
    format_weight: float = 0.3,
    accuracy_weight: float = 0.7,
    problem_type: str = MULTIPLE_CHOICE,
) -> RewardBreakdown:
    """Both rewards and their weighted sum ``format_weight*format + accuracy_weight*accuracy``.

    ``correct`` is the option letter for multiple choice, else the reference answer (``options``
    empty); the choice is None for the other types.

    >>> score = score_completion("<answer>(A) left</answer>", "A", {"A": "left", "B": "right"})
    >>> score.format_reward, score.accuracy_reward, score.total_reward, score.choice
    (0.0, 1.0, 0.7, 'A')
    >>> score = score_completion("<answer>4</answer>", "4", {}, mode="no_think", problem_type="numerical")
    >>> score.format_reward, score.accuracy_reward, score.answer, score.choice
    (1.0, 1.0, '4', None)
    """
    _check_mode(mode)
    parts = split_completion(completion)
    fmt = format_reward(completion, mode)
    if problem_type != MULTIPLE_CHOICE:
        answer = parts.answer if parts.is_answer_closed else None
        acc = answer_reward(problem_type, answer, correct)
        return RewardBreakdown(
            format_reward=fmt,
            accuracy_reward=acc,
            total_reward=format_weight * fmt + accuracy_weight * acc,
            think=_closed_blocks(parts).think,
            answer=answer,
            choice=None,
        )
    if correct not in options:
        raise ValueError(f"correct answer {correct!r} is not one of the options {', '.join(options)}")
    choice = _choice_of(parts, options)
    acc = 1.0 if choice.letter == correct else 0.0
    return RewardBreakdown(
        format_reward=fmt,
        accuracy_reward=acc,
        total_reward=format_weight * fmt + accuracy_weight * acc,
        think=_closed_blocks(parts).think,
        answer=choice.answer,
        choice=choice.letter,
    )
