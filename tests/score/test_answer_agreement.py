"""One answer parser: the chat verdict, the accuracy reward and eval read the same letter from a completion.

Issue 21 item 5: they used to parse differently and disagree both ways (an unclosed ``<answer>`` was
"correct" in the chat and 0 in training; an ``<answer>`` inside an unclosed ``<think>`` was "no
option chosen" in the chat and 1 in training). Each row below is worked out by hand from the rule in
``trainer.score.rewards``: the letter comes from the first closed ``<answer>…</answer>`` block outside
the think block, and a ``<think>`` never closed runs to the end of the text.
"""

from __future__ import annotations

import pytest

from studio.chat_engine import verdict
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.records import MCQRecord
from trainer.eval.evaluate import score_record
from trainer.score.rewards import accuracy_reward, read_choice

OPTIONS = {"A": "left", "B": "right"}
CORRECT = "B"

CASES = [
    # (completion, mode, chosen letter, format ok, the chat's verdict line)
    (
        "<think>it moves right</think> <answer>(B) right</answer>",
        THINK, "B", True, "format ✓ · chose B · correct ✓",
    ),
    (
        "<think>it moves left</think> <answer>(A) left</answer>",
        THINK, "A", True, "format ✓ · chose A · wrong ✗ (answer B)",
    ),
    ("<answer>(B) right</answer>", NO_THINK, "B", True, "format ✓ · chose B · correct ✓"),
    ("<answer>(A)</answer>", NO_THINK, "A", True, "format ✓ · chose A · wrong ✗ (answer B)"),
    # Right letter, wrong shape for think mode: the accuracy reward still pays it.
    ("<answer>(B) right</answer>", THINK, "B", False, "format ✗ · chose B · correct ✓"),
    # The three strings of the issue. Cut off before </answer>: nothing chosen.
    (
        "<think>it moves right</think> <answer>(B) right",
        THINK, None, False, "format ✗ · no option chosen (<answer> not closed) · wrong ✗ (answer B)",
    ),
    # The think block never closes, so the <answer> after it is still reasoning.
    (
        "<think>hmm <answer>(B)</answer>",
        THINK, None, False, "format ✗ · no option chosen (<think> not closed) · wrong ✗ (answer B)",
    ),
    # Answer first, then the reasoning: a closed answer outside the think block; wrong order only.
    ("<answer>(B)</answer><think>x</think>", THINK, "B", False, "format ✗ · chose B · correct ✓"),
    ("<answer>(B)</answer><think>x</think>", NO_THINK, "B", False, "format ✗ · chose B · correct ✓"),
    # An answer only inside a closed think block is reasoning too.
    (
        "<think>maybe <answer>(B)</answer></think>",
        THINK, None, False, "format ✗ · no option chosen (<answer> only inside <think>) · wrong ✗ (answer B)",
    ),
    (
        "It goes right, so B",
        NO_THINK, None, False, "format ✗ · no option chosen (no <answer> tag) · wrong ✗ (answer B)",
    ),
    (
        "<answer>A or B</answer>",
        NO_THINK, None, True,
        "format ✓ · no option chosen (the answer names no option, or more than one) · wrong ✗ (answer B)",
    ),
]  # fmt: skip


def _record(mode: str) -> MCQRecord:
    return MCQRecord(
        id="q_1", video="/v/q_1.mp4", image=None, question="Which way?", options=OPTIONS,
        answer=CORRECT, source="hand.jsonl", index=1, mode=mode,
    )  # fmt: skip


@pytest.mark.parametrize(("completion", "mode", "letter", "is_format_ok", "line"), CASES)
def test_chat_reward_and_eval_agree(
    completion: str, mode: str, letter: str | None, is_format_ok: bool, line: str
) -> None:
    is_correct = letter == CORRECT
    assert read_choice(completion, OPTIONS).letter == letter
    assert verdict(completion, OPTIONS, mode, CORRECT) == line
    assert accuracy_reward(completion, CORRECT, OPTIONS) == (1.0 if is_correct else 0.0)
    scored = score_record(_record(mode), completion)
    assert (scored["chosen"], scored["is_correct"], scored["format_ok"]) == (letter, is_correct, is_format_ok)
