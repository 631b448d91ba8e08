"""trainer.score.rewards: tables of completions with the reward worked out by hand, and properties."""

from __future__ import annotations

import doctest
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.score.rewards as rewards
from trainer.data.prompts import answer_text
from trainer.score.rewards import (
    NO_THINK,
    THINK,
    AnswerChoice,
    CompletionParts,
    ParsedCompletion,
    RewardBreakdown,
    accuracy_reward,
    extract_choice,
    format_reward,
    parse_completion,
    read_choice,
    score_completion,
    split_completion,
)

OPTIONS = {"A": "Rolls left", "B": "Collision", "C": "Stays still", "D": "Rolls right"}


def test_doctests_pass() -> None:
    result = doctest.testmod(rewards)
    assert (result.failed, result.attempted) == (0, 24)


# --- parse_completion -------------------------------------------------------------------------------

PARSE_CASES = [
    ("<think> a </think><answer> (B) x </answer>", "a", "(B) x"),
    ("<answer>B</answer>", None, "B"),
    ("<think>only thinking</think>", "only thinking", None),
    ("<answer></answer>", None, ""),
    # First complete block wins (Video-R1's re.search); repeats are the format reward's business.
    ("<answer>A</answer><answer>B</answer>", None, "A"),
    ("<answer>unterminated", None, None),
    ("<ANSWER>B</ANSWER>", None, None),
    ("<think>multi\nline\n</think>\n<answer>\nC\n</answer>", "multi\nline", "C"),
    # Blocks never nest and a block never closed runs to the end (issue 21: one rule for chat and rewards).
    ("<think>hmm <answer>(B)</answer>", None, None),
    ("<think>r <answer>B</answer></think>", "r <answer>B</answer>", None),
    ("<answer>(B)</answer><think>x</think>", "x", "(B)"),
    ("<think>r</think> <answer>(B) x", "r", None),
]


@pytest.mark.parametrize(("completion", "think", "answer"), PARSE_CASES)
def test_parse_completion(completion: str, think: str | None, answer: str | None) -> None:
    assert parse_completion(completion) == ParsedCompletion(think=think, answer=answer)


def test_split_completion_while_streaming_and_after() -> None:
    assert split_completion("<think>it goes le") == CompletionParts(
        think="it goes le", answer=None, other="", is_think_closed=False, is_answer_closed=False
    )
    full = split_completion("<think> it goes left </think>\n<answer>(A) left</answer> extra")
    assert full == CompletionParts(
        think="it goes left", answer="(A) left", other="extra", is_think_closed=True, is_answer_closed=True
    )
    assert split_completion("The answer is B") == CompletionParts(
        think=None, answer=None, other="The answer is B", is_think_closed=False, is_answer_closed=False
    )
    # An <answer> typed inside an unfinished think block is still thinking.
    assert split_completion("<think>maybe <answer>(A)") == CompletionParts(
        think="maybe <answer>(A)", answer=None, other="", is_think_closed=False, is_answer_closed=False
    )
    # Repeated blocks and stray closing tags are text outside the blocks, tags included.
    stray = split_completion("x </think> <answer>A</answer> <answer>B</answer>")
    assert stray == CompletionParts(
        think=None,
        answer="A",
        other="x </think> <answer>B</answer>",
        is_think_closed=False,
        is_answer_closed=True,
    )


WHY_NONE_CASES = [
    ("<think>r</think> <answer>(B) right", "<answer> not closed"),
    ("<think>hmm <answer>(B)</answer>", "<think> not closed"),
    ("<think>still thinking", "<think> not closed"),
    ("<think>maybe <answer>(B)</answer></think>", "<answer> only inside <think>"),
    ("<think>r</think> B", "no <answer> tag"),
    ("<answer> </answer>", "the answer is empty"),
    ("<answer>A or B</answer>", "the answer names no option, or more than one"),
]


@pytest.mark.parametrize(("completion", "why"), WHY_NONE_CASES)
def test_read_choice_says_why_nothing_was_chosen(completion: str, why: str) -> None:
    got = read_choice(completion, OPTIONS)
    assert (got.letter, got.why_none) == (None, why)


def test_read_choice_of_a_closed_answer() -> None:
    assert read_choice("<answer>(B)</answer><think>x</think>", OPTIONS) == AnswerChoice(
        answer="(B)", letter="B", why_none=None
    )


# --- format_reward ----------------------------------------------------------------------------------

FORMAT_CASES = [
    # (completion, mode, expected)
    ("<think>r</think><answer>B</answer>", THINK, 1.0),
    ("  \n<think>\nreason\n</think>\n\n<answer>(B) Collision</answer>\n ", THINK, 1.0),
    ("<think></think> <answer>B</answer>", THINK, 1.0),  # empty reasoning is still the shape
    ("<think>r</think> <answer>  </answer>", THINK, 0.0),  # empty answer
    ("<think>r</think> <answer></answer>", THINK, 0.0),
    ("<answer>B</answer>", THINK, 0.0),  # think block missing
    ("<answer>B</answer> <think>r</think>", THINK, 0.0),  # wrong order
    ("<think>r</think> so <answer>B</answer>", THINK, 0.0),  # text between
    ("Sure! <think>r</think> <answer>B</answer>", THINK, 0.0),  # text before
    ("<think>r</think> <answer>B</answer>.", THINK, 0.0),  # text after
    ("<think>r</think> <answer>B</answer><|im_end|>", THINK, 0.0),
    ("<think>a<think>b</think></think> <answer>B</answer>", THINK, 0.0),  # nested
    ("<think>a</think><think>b</think> <answer>B</answer>", THINK, 0.0),  # repeated think
    ("<think>r</think> <answer>A</answer><answer>B</answer>", THINK, 0.0),  # repeated answer
    ("<think>r</think> <answer>A <answer>B</answer>", THINK, 0.0),
    ("<think>r <answer>B</answer></think>", THINK, 0.0),
    ("<think>r</think> <answer>B", THINK, 0.0),  # cut off
    ("<Think>r</Think> <answer>B</answer>", THINK, 0.0),  # tags are case-sensitive
    ("<answer>B</answer>", NO_THINK, 1.0),
    ("\n <answer>(B) Collision</answer> \n", NO_THINK, 1.0),
    ("<think>r</think> <answer>B</answer>", NO_THINK, 0.0),  # think block not wanted
    ("<think></think><answer>B</answer>", NO_THINK, 0.0),
    ("<answer>B</answer> because", NO_THINK, 0.0),
    ("<answer> </answer>", NO_THINK, 0.0),
    ("<answer>A</answer> <answer>B</answer>", NO_THINK, 0.0),
    ("B", NO_THINK, 0.0),
    ("", THINK, 0.0),
    ("", NO_THINK, 0.0),
]


@pytest.mark.parametrize(("completion", "mode", "expected"), FORMAT_CASES)
def test_format_reward(completion: str, mode: str, expected: float) -> None:
    assert format_reward(completion, mode) == expected


def test_format_reward_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode must be 'think' or 'no_think', got 'cot'"):
        format_reward("<answer>B</answer>", "cot")


# --- extract_choice ---------------------------------------------------------------------------------

CHOICE_CASES = [
    # Letter forms.
    ("B", "B"),
    ("(B)", "B"),
    ("( B )", "B"),
    ("B.", "B"),
    ("B)", "B"),
    ("B:", "B"),
    ("(B).", "B"),
    ("(B) Collision", "B"),
    ("(B) collision.", "B"),
    ("B. Collision", "B"),
    ("B) Collision", "B"),
    ("B: x", "B"),  # text after the letter that names no option does not contradict it
    ("(B) the two balls hit", "B"),
    # Option text alone: case-, space- and punctuation-insensitive exact match.
    ("Collision", "B"),
    ("  collision!! ", "B"),
    ("STAYS   STILL.", "C"),
    ("stays-still", "C"),
    ("staysstill", None),  # words must stay apart
    ("Collision of balls", None),  # not an exact match
    ("Collis", None),
    # Ambiguous: two letters, or letter contradicted by the text.
    ("A or B", None),
    ("A, B", None),
    ("A and B", None),
    ("(A) or (B)", None),
    ("A. or B.", None),
    ("(A) Collision", None),  # letter A, text of B
    ("A: Collision", None),
    # Not a choice.
    ("E", None),  # not an option letter
    ("(E) Collision", None),
    ("b", None),  # lowercase letters are words
    ("(b)", None),
    ("The answer is B", None),
    ("Answer: B", None),
    ("BC", None),
    ("", None),
    ("   ", None),
    ("...", None),
]


@pytest.mark.parametrize(("answer", "expected"), CHOICE_CASES)
def test_extract_choice(answer: str, expected: str | None) -> None:
    assert extract_choice(answer, OPTIONS) == expected


def test_extract_choice_shared_text_is_ambiguous_but_letter_decides() -> None:
    options = {"A": "Left", "B": "left.", "C": "Right"}
    assert extract_choice("left", options) is None
    assert extract_choice("(B) left", options) == "B"
    assert extract_choice("(A) Left", options) == "A"
    assert extract_choice("(C) left", options) is None


def test_extract_choice_option_texts_that_look_like_letters() -> None:
    # "A ball" is a word followed by text, not the letter A.
    options = {"A": "A ball", "B": "B.5", "C": "A.I. research"}
    assert extract_choice("A ball", options) == "A"
    assert extract_choice("(A) A ball", options) == "A"
    assert extract_choice("(C) A.I. research", options) == "C"
    # Both readings (letter A, or C's text) exist: ambiguous rather than a silent wrong letter.
    assert extract_choice("A.I. research", options) is None
    # Punctuation becomes a space, so "10.0" and "100" stay different options.
    numbers = {"A": "10.0", "B": "100", "C": "5.0"}
    assert [extract_choice(a, numbers) for a in ("10.0", "100", "10 0", "(B) 100")] == ["A", "B", "A", "B"]


def test_extract_choice_only_letters_present_in_options() -> None:
    ten = {letter: f"option {letter.lower()}" for letter in "ABCDEFGHIJ"}
    assert extract_choice("(J)", ten) == "J"
    assert extract_choice("J. option j", ten) == "J"
    assert extract_choice("(K)", ten) is None
    assert extract_choice("(C)", {"A": "x", "B": "y"}) is None
    assert extract_choice("A", {}) is None


# --- accuracy_reward and score_completion -----------------------------------------------------------

ACCURACY_CASES = [
    ("<think>r</think> <answer>(B) Collision</answer>", 1.0),
    ("<answer>B</answer>", 1.0),  # wrong format for think mode, still the right choice
    ("<answer>collision</answer> trailing text", 1.0),
    ("<think>(B)</think> <answer>(A)</answer>", 0.0),  # the think block is not the answer
    ("<answer>(A) Rolls left</answer>", 0.0),
    ("<answer>A or B</answer>", 0.0),
    ("<answer></answer>", 0.0),
    ("<answer>A</answer><answer>B</answer>", 0.0),  # only the first block counts
    # No <answer> block: no fallback to the last line.
    ("<think>it collides</think>\nB", 0.0),
    ("(B) Collision", 0.0),
    ("<answer>B", 0.0),
    # Inside an unclosed think block the answer is still reasoning (issue 21; this used to score 1.0).
    ("<think>hmm <answer>(B)</answer>", 0.0),
    ("<think>r <answer>B</answer></think>", 0.0),
    ("<answer>(B)</answer><think>x</think>", 1.0),  # wrong order: the format reward's business
]


@pytest.mark.parametrize(("completion", "expected"), ACCURACY_CASES)
def test_accuracy_reward(completion: str, expected: float) -> None:
    assert accuracy_reward(completion, "B", OPTIONS) == expected


def test_accuracy_reward_rejects_correct_letter_outside_options() -> None:
    with pytest.raises(ValueError, match="correct answer 'E' is not one of the options A, B, C, D"):
        accuracy_reward("<answer>E</answer>", "E", OPTIONS)


SCORE_CASES = [
    # (completion, mode, format, accuracy, total = 0.3*format + 0.7*accuracy, think, answer, choice)
    ("<think>hit</think> <answer>(B) Collision</answer>", THINK, 1.0, 1.0, 1.0, "hit", "(B) Collision", "B"),
    ("<think>hit</think> <answer>(A)</answer>", THINK, 1.0, 0.0, 0.3, "hit", "(A)", "A"),
    ("<answer>B</answer>", THINK, 0.0, 1.0, 0.7, None, "B", "B"),
    ("<answer>B</answer>", NO_THINK, 1.0, 1.0, 1.0, None, "B", "B"),
    ("<answer>A or B</answer>", NO_THINK, 1.0, 0.0, 0.3, None, "A or B", None),
    ("no tags at all", THINK, 0.0, 0.0, 0.0, None, None, None),
]


@pytest.mark.parametrize(
    ("completion", "mode", "fmt", "acc", "total", "think", "answer", "choice"), SCORE_CASES
)
def test_score_completion(
    completion: str,
    mode: str,
    fmt: float,
    acc: float,
    total: float,
    think: str | None,
    answer: str | None,
    choice: str | None,
) -> None:
    got = score_completion(completion, "B", OPTIONS, mode=mode)
    assert got.format_reward == fmt
    assert got.accuracy_reward == acc
    assert got.total_reward == pytest.approx(total, abs=1e-6)
    assert (got.think, got.answer, got.choice) == (think, answer, choice)


def test_score_completion_custom_weights() -> None:
    got = score_completion(
        "<answer>B</answer>", "B", OPTIONS, mode=THINK, format_weight=2.0, accuracy_weight=0.5
    )
    # 2.0 * 0 (no think block) + 0.5 * 1 = 0.5
    assert got == RewardBreakdown(
        format_reward=0.0, accuracy_reward=1.0, total_reward=0.5, think=None, answer="B", choice="B"
    )


def test_score_completion_validates_mode_and_letter() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        score_completion("<answer>B</answer>", "B", OPTIONS, mode="THINK")
    with pytest.raises(ValueError, match="correct answer 'Z'"):
        score_completion("<answer>B</answer>", "Z", OPTIONS)


# --- properties -------------------------------------------------------------------------------------

# Option and reasoning texts: anything but the tag brackets, half of them from a small alphabet of
# letters and punctuation so look-alikes of "(A)" / "B." / shared texts come up often.
_TEXT = st.one_of(
    st.text(alphabet="ABCDab().:,-?! 1", max_size=10),
    st.text(alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=30),
)


@st.composite
def mcq(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    """Options A.. (2-10 of them, any texts, even shared or empty) and one of their letters."""
    n = draw(st.integers(min_value=2, max_value=10))
    letters = string.ascii_uppercase[:n]
    options = {letter: draw(_TEXT) for letter in letters}
    return options, draw(st.sampled_from(letters))


@settings(max_examples=300, deadline=None)
@given(mcq(), _TEXT, st.sampled_from([THINK, NO_THINK]))
def test_canonical_answer_scores_its_own_letter_only(
    question: tuple[dict[str, str], str], think: str, mode: str
) -> None:
    options, letter = question
    completion = answer_text(letter, options, think=think if mode == THINK else None)
    assert format_reward(completion, mode) == 1.0
    for other in options:
        assert accuracy_reward(completion, other, options) == (1.0 if other == letter else 0.0)


@settings(max_examples=300, deadline=None)
@given(
    mcq(),
    _TEXT,
    st.text(min_size=1, max_size=20).filter(lambda s: not s.isspace()),
    st.sampled_from(["before", "between", "after"]),
)
def test_text_outside_the_tags_breaks_the_format(
    question: tuple[dict[str, str], str], think: str, junk: str, where: str
) -> None:
    options, letter = question
    answer = f"<answer>({letter}) {options[letter]}</answer>"
    parts = {"before": "", "between": " ", "after": ""}
    parts[where] = f" {junk} "
    completion = f"{parts['before']}<think>{think}</think>{parts['between']}{answer}{parts['after']}"
    assert format_reward(completion, THINK) == 0.0
    if where != "between":
        assert format_reward(f"{parts['before']}{answer}{parts['after']}", NO_THINK) == 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=60),
    mcq(),
    st.sampled_from([THINK, NO_THINK]),
    st.floats(min_value=0, max_value=10),
    st.floats(min_value=0, max_value=10),
)
def test_total_is_the_weighted_sum_within_bounds(
    completion: str, question: tuple[dict[str, str], str], mode: str, w_f: float, w_a: float
) -> None:
    options, letter = question
    got = score_completion(completion, letter, options, mode, format_weight=w_f, accuracy_weight=w_a)
    assert got.format_reward in (0.0, 1.0) and got.accuracy_reward in (0.0, 1.0)
    assert got.total_reward == w_f * got.format_reward + w_a * got.accuracy_reward
    assert 0.0 <= got.total_reward <= w_f + w_a
