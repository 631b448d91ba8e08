"""The numerical warm start (assets/tiny-qwen2.5-vl-numerical, scripts/build_tiny_model.py --numerical):
well-formed counts at chance on the numerical split, the letters' format kept, the base's tokenizer
and processor files unchanged; and what the shipped letters-only model does there (why it exists)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.model.test_tiny_model import assert_answers_in_format_at_chance
from tests.model.test_tiny_model import eval_set as eval_set  # noqa: F401  (the fixture, reused)
from trainer.core.paths import TINY_MODEL_DIR, TINY_NUMERICAL_MODEL_DIR
from trainer.core.video_config import VideoConfig
from trainer.data import load_dataset_use
from trainer.data.prompts import NO_THINK, THINK
from trainer.eval.evaluate import EvalResult, evaluate
from trainer.model.loading import generation_kwargs, load_policy

N_EVAL = 100
NUMERICAL_EVAL = {
    NO_THINK: "synthetic_motion_numerical_no_think_eval",
    THINK: "synthetic_motion_numerical_eval",
}
SHARED_FILES = ("chat_template.jinja", "processor_config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def policy() -> tuple:
    if not (TINY_NUMERICAL_MODEL_DIR / "config.json").exists():
        pytest.fail(f"missing {TINY_NUMERICAL_MODEL_DIR}: run scripts/build_tiny_model.py --numerical")
    torch.manual_seed(0)
    return load_policy(TINY_NUMERICAL_MODEL_DIR)


def evaluate_numerical(policy: tuple, mode: str, workspace: Path) -> EvalResult:
    """Greedy, on the first N_EVAL clips of the numerical held-out split in ``mode``."""
    model, processor = policy
    records = load_dataset_use(NUMERICAL_EVAL[mode], workspace, 0)[:N_EVAL]
    video = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)
    return evaluate(model, processor, records, video, generation_kwargs(processor, 40, do_sample=False))


@pytest.mark.parametrize("mode", [NO_THINK, THINK])
def test_numerical_answers_are_well_formed_counts_at_chance(policy: tuple, tmp_path: Path, mode: str) -> None:
    result = evaluate_numerical(policy, mode, tmp_path)
    assert result.format_rate >= 0.9
    # Counts were random in the warm start (three of them): GRPO must start with nothing to exploit.
    assert 0.15 <= result.accuracy <= 0.5, result


@pytest.mark.parametrize("mode", [NO_THINK, THINK])
def test_letters_format_is_kept(policy: tuple, eval_set: tuple, mode: str) -> None:  # noqa: F811
    assert_answers_in_format_at_chance(policy, eval_set, mode, sample=True)


def test_shares_the_base_tokenizer_and_processor() -> None:
    for name in SHARED_FILES:
        assert (TINY_NUMERICAL_MODEL_DIR / name).read_bytes() == (TINY_MODEL_DIR / name).read_bytes(), name


def test_letters_only_model_scores_nothing_on_counts(tmp_path: Path) -> None:
    """The shipped model answers a letter, which the exact-number reward never pays."""
    torch.manual_seed(0)
    result = evaluate_numerical(load_policy(TINY_MODEL_DIR), NO_THINK, tmp_path)
    assert result.accuracy == 0.0
