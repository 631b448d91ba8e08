"""trainer.score.answer_types: each reward and metric against numbers worked by hand, and every
reward against a transcription of Video-R1's own ``accuracy_reward`` on ~20 pairs per type."""

from __future__ import annotations

import doctest

import pytest
from rouge_score import rouge_scorer

from trainer.score import answer_types
from trainer.score.answer_types import (
    EVAL_METRICS,
    answer_reward,
    eval_value,
    free_form_reward,
    mean_relative_accuracy,
    numerical_reward,
    ocr_reward,
    regression_reward,
    rouge_f,
    word_error_rate,
)


def test_doctests_pass() -> None:
    result = doctest.testmod(answer_types)
    assert result.attempted > 0 and result.failed == 0


# --- Video-R1's accuracy_reward (tulerfeng/Video-R1, src/r1-v/src/open_r1/grpo.py), transcribed:
# its helpers and the per-type branches, on the already extracted answer texts. The try/except that
# turns any error (a None number in the regression branch) into 0.0 is kept.


def _vr1_normalize_number(num_str):
    try:
        num_str = num_str.replace(",", "")
        return float(num_str)
    except Exception:
        return None


def _vr1_wer(reference, hypothesis):
    ref_words = reference.split()
    hyp_words = hypothesis.split()
    m = len(ref_words)
    n = len(hyp_words)
    d = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        d[i][0] = i
    for j in range(n + 1):
        d[0][j] = j
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            if ref_words[i - 1] == hyp_words[j - 1]:
                d[i][j] = d[i - 1][j - 1]
            else:
                d[i][j] = 1 + min(d[i - 1][j], d[i][j - 1], d[i - 1][j - 1])
    return d[m][n] / max(1, m)


def _vr1_compute_rouge_score(reference, hypothesis, use_stemmer=True):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    scores = scorer.score(reference, hypothesis)
    return (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3


def _vr1_reward(question_type, output_ans, gt_ans):
    try:
        if question_type == "numerical":
            gt_has_decimal = ("." in gt_ans) or ("," in gt_ans)
            out_has_decimal = ("." in output_ans) or ("," in output_ans)
            if gt_has_decimal != out_has_decimal:
                reward = 0.0
            else:
                gt_number = _vr1_normalize_number(gt_ans)
                out_number = _vr1_normalize_number(output_ans)
                if gt_number is None or out_number is None:
                    reward = 0.0
                else:
                    reward = 1.0 if round(gt_number, 2) == round(out_number, 2) else 0.0
        elif question_type == "OCR":
            error_rate = _vr1_wer(gt_ans, output_ans)
            reward = 1 - error_rate
            reward = max(0.0, min(1.0, reward))
        elif question_type == "free-form":
            score = _vr1_compute_rouge_score(gt_ans, output_ans)
            reward = max(0.0, min(1.0, score))
        elif question_type == "regression":
            gt_number = _vr1_normalize_number(gt_ans)
            out_number = _vr1_normalize_number(output_ans)
            if gt_number is None or out_number is None:
                reward = 0.0
            rel_diff = (abs(out_number - gt_number) + 1e-9) / (abs(gt_number) + 1e-9)
            rel_diff = min(1.0, max(0.0, rel_diff))
            reward = 1 - rel_diff
        else:
            reward = 0.0
    except Exception:
        reward = 0.0
    return reward


# (answer, reference) pairs per type; the references are ones check_reference accepts.
PAIRS = {
    "numerical": [
        ("42", "42"), ("42", "43"), ("3.14", "3.14"), ("3.14159", "3.14"), ("3.149", "3.14"),
        ("3.0", "3"), ("3", "3.0"), ("1,000", "1000"), ("1,000", "1,000"), ("1,000", "1.000"),
        ("-2", "-2"), ("-2", "2"), ("0", "0"), ("seven", "7"), ("", "7"), ("7 apples", "7"),
        ("0.005", "0.01"), ("2.675", "2.67"), (" 12 ", "12"), ("1e3", "1000"), ("12.50", "12.5"),
    ],
    "OCR": [
        ("STOP", "STOP"), ("stop", "STOP"), ("a x c", "a b c"), ("a b c d", "a b c"), ("a c", "a b c"),
        ("", "EXIT"), ("x y z w v", "a b"), ("Hello, world", "Hello world"), ("EXIT ONLY", "EXIT"),
        ("one  two\tthree", "one two three"), ("two one", "one two"), ("OPEN 24 HOURS", "OPEN 24 HOURS"),
        ("OPEN 24 HRS", "OPEN 24 HOURS"), ("the the the", "the"), ("a b c", "c b a"),
        ("Main St.", "Main St"), ("No Parking Any Time", "NO PARKING ANY TIME"), ("x", "a b c d e"),
        ("line one\nline two", "line one line two"), ("CAFÉ", "CAFÉ"),
    ],
    "free-form": [
        ("a man opens the door", "a man opens the door"),
        ("A man opens the door.", "a man opens the door"),
        ("the cat ran", "the cat sat"), ("", "a man opens the door"), ("door", "a man opens the door"),
        ("a woman closes the window", "a man opens the door"),
        ("the man is opening doors", "a man opens the door"),
        ("he runs fast", "she is running quickly"), ("blue", "red"),
        ("the ball rolls to the left side", "the ball rolls left"),
        ("people dancing at a party", "people are dancing at a wedding party"), ("!!!", "a dog"),
        ("The dog barks at the mailman", "a dog barking at a mail carrier"),
        ("cooking pasta", "someone is cooking pasta in a kitchen"),
        ("yes", "yes"), ("no", "yes"), ("two birds fly over the lake", "two birds flying over a lake"),
        ("the car stops then turns right", "the car turns right after stopping"),
        ("3 people", "three people"),
        ("a child plays with a red ball in the park", "a kid playing with a ball"),
    ],
    "regression": [
        ("10", "10"), ("9", "10"), ("11", "10"), ("5", "10"), ("30", "10"), ("0", "10"), ("-10", "10"),
        ("2.5", "2.0"), ("1.73", "1.8"), ("big", "10"), ("", "3.5"), ("100", "120.5"), ("7", "0.5"),
        ("0.49", "0.5"), ("1,200", "1000"), ("3", "0"), ("-1.5", "-2"), ("14.2", "14.2"), ("60", "45"),
        ("0.0001", "0.0002"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("problem_type", sorted(PAIRS))
def test_rewards_match_video_r1(problem_type: str) -> None:
    pairs = PAIRS[problem_type]
    assert len(pairs) >= 20
    ours = [answer_reward(problem_type, answer, ref) for answer, ref in pairs]
    theirs = [_vr1_reward(problem_type, answer, ref) for answer, ref in pairs]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert all(0.0 <= r <= 1.0 for r in ours)


def test_regression_departs_from_video_r1_only_at_zero_reference() -> None:
    # Video-R1: (|0 - 0| + 1e-9) / (0 + 1e-9) = 1 -> reward 0 for the exact answer.
    assert _vr1_reward("regression", "0", "0") == 0.0
    assert regression_reward("0", "0") == 1.0
    assert regression_reward("0.5", "0") == _vr1_reward("regression", "0.5", "0") == 0.0


def test_inf_is_no_number_unlike_video_r1() -> None:
    assert _vr1_reward("numerical", "inf", "inf") == 1.0  # float("inf") both sides
    with pytest.raises(ValueError, match="must be a number"):
        numerical_reward("inf", "inf")  # parse_number refuses it as a reference
    assert numerical_reward("inf", "7") == 0.0


def test_numerical_by_hand() -> None:
    assert numerical_reward("42", "42") == 1.0
    assert numerical_reward("3.14159", "3.14") == 1.0  # round(3.14159, 2) = 3.14
    assert numerical_reward("3.149", "3.14") == 0.0  # round(3.149, 2) = 3.15
    assert numerical_reward("3.0", "3") == 0.0  # decimal mark on one side only
    assert numerical_reward("1,000", "1000") == 0.0  # a comma is a mark too
    assert numerical_reward("1,000", "1,000") == 1.0
    assert numerical_reward("seven", "7") == 0.0
    with pytest.raises(ValueError, match="numerical reference must be a number, got 'x'"):
        numerical_reward("1", "x")


def test_wer_and_ocr_by_hand() -> None:
    # "a b c" -> "a x c": one substitution over 3 reference words.
    assert word_error_rate("a x c", "a b c") == pytest.approx(1 / 3, abs=1e-12)
    assert ocr_reward("a x c", "a b c") == pytest.approx(2 / 3, abs=1e-12)
    # one insertion over 3 words; two deletions over 3
    assert word_error_rate("a b c d", "a b c") == pytest.approx(1 / 3, abs=1e-12)
    assert word_error_rate("a", "a b c") == pytest.approx(2 / 3, abs=1e-12)
    # 5 words against 2 (2 substitutions + 3 insertions): WER 2.5, reward clipped to 0
    assert word_error_rate("x y z w v", "a b") == pytest.approx(2.5, abs=1e-12)
    assert ocr_reward("x y z w v", "a b") == 0.0
    # case counts; any whitespace splits words
    assert word_error_rate("stop", "STOP") == 1.0
    assert word_error_rate("one\ttwo\nthree", "one two three") == 0.0
    # an empty answer deletes every word; an empty reference has no rate
    assert word_error_rate("", "a b") == 1.0 and ocr_reward("  ", "a b") == 0.0
    with pytest.raises(ValueError, match="at least one word"):
        word_error_rate("a", "   ")


def test_rouge_by_hand() -> None:
    # reference "the cat sat", answer "the cat ran": unigrams 2 of 3 both ways -> F1 2/3; bigrams
    # {the cat} shared of 2 -> 1/2; LCS "the cat" = 2 -> 2/3. Mean (2/3 + 1/2 + 2/3) / 3 = 11/18.
    assert rouge_f("the cat ran", "the cat sat") == pytest.approx(11 / 18, abs=1e-12)
    # reference "a man opens the door" (5 words), answer "door": R1 P=1, R=1/5, F=1/3; R2 0; RL 1/3.
    assert rouge_f("door", "a man opens the door") == pytest.approx((1 / 3 + 0 + 1 / 3) / 3, abs=1e-12)
    # stemming: "opening doors" meets "opens door" (open, door both ways) -> all three F are 1
    assert free_form_reward("opening doors", "opens door") == pytest.approx(1.0, abs=1e-12)
    assert free_form_reward("", "a dog") == 0.0
    assert free_form_reward("A man opens the door.", "a man opens the door") == 1.0


def test_regression_by_hand() -> None:
    assert regression_reward("9", "10") == pytest.approx(1 - (1 + 1e-9) / (10 + 1e-9), abs=1e-12)
    assert regression_reward("9", "10") == pytest.approx(0.9, abs=1e-6)
    assert regression_reward("12.5", "10") == pytest.approx(0.75, abs=1e-6)
    assert regression_reward("20", "10") == 0.0 and regression_reward("-10", "10") == 0.0
    assert regression_reward("10", "10") == pytest.approx(1.0, abs=1e-6)
    assert regression_reward("n/a", "10") == 0.0


def test_mra_by_hand() -> None:
    # |9 - 10| / 10 = 0.1 < 1 - theta for theta < 0.9: 0.50 ... 0.85 pass, 8 of 10.
    assert mean_relative_accuracy("9", "10") == 0.8
    assert mean_relative_accuracy("11", "10") == 0.8
    # 0.3 < 1 - theta for theta < 0.7: 0.50, 0.55, 0.60, 0.65 -> 0.4
    assert mean_relative_accuracy("7", "10") == 0.4
    # 0.05: theta 0.50 ... 0.90 pass (0.05 < 0.05 fails at 0.95) -> 0.9; 0.01 passes all
    assert mean_relative_accuracy("105", "100") == 0.9
    assert mean_relative_accuracy("101", "100") == 1.0
    # 0.5 off passes nothing; 0.49 passes theta 0.50 only
    assert mean_relative_accuracy("5", "10") == 0.0
    assert mean_relative_accuracy("5.1", "10") == pytest.approx(0.1, abs=1e-12)
    # negative references by |r|; r = 0: exact or nothing
    assert mean_relative_accuracy("-9", "-10") == 0.8
    assert (mean_relative_accuracy("0", "0"), mean_relative_accuracy("0.001", "0")) == (1.0, 0.0)
    assert mean_relative_accuracy("about 9", "10") == 0.0


def test_dispatch_and_eval_values() -> None:
    assert EVAL_METRICS == {
        "multiple choice": "accuracy",
        "numerical": "accuracy",
        "OCR": "wer",
        "free-form": "rouge",
        "regression": "mra",
    }
    assert answer_reward("numerical", "4", "4") == 1.0
    assert answer_reward("OCR", "a x c", "a b c") == pytest.approx(2 / 3, abs=1e-12)
    assert answer_reward("free-form", "the cat ran", "the cat sat") == pytest.approx(11 / 18, abs=1e-12)
    assert answer_reward("regression", "9", "10") == pytest.approx(0.9, abs=1e-6)
    # eval values: the WER itself, the ROUGE mean, MRA (not the training reward)
    assert eval_value("numerical", "4", "4") == 1.0
    assert eval_value("OCR", "a x c", "a b c") == pytest.approx(1 / 3, abs=1e-12)
    assert eval_value("free-form", "the cat ran", "the cat sat") == pytest.approx(11 / 18, abs=1e-12)
    assert eval_value("regression", "9", "10") == 0.8
    # no closed answer block: reward 0, the metric's worst value
    for problem_type in ("numerical", "OCR", "free-form", "regression"):
        assert answer_reward(problem_type, None, "1") == 0.0
    assert [eval_value(t, None, "1") for t in ("numerical", "OCR", "free-form", "regression")] == [
        0.0,
        1.0,
        0.0,
        0.0,
    ]
    with pytest.raises(ValueError, match="option letter"):
        answer_reward("multiple choice", "A", "A")
    with pytest.raises(ValueError, match="option letter"):
        eval_value("multiple choice", "A", "A")
    with pytest.raises(ValueError, match="problem_type 'ocr' is unknown"):
        answer_reward("ocr", "A", "A")  # Video-R1 spelling only: canonical_type first
