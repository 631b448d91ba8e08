"""Numerical format warm start: teach a multiple-choice-warm-started model the numerical answer format.

The shipped tiny model (warm_start.py) was warm-started on multiple-choice answers only; asked "How
many times does the square bounce?" it answers ``<answer>(A) left</answer>``, which the numerical
accuracy reward (exact number match) never pays, so GRPO gets no signal. This pass continues from
its weights on a mix of multiple-choice prompts (random letters, as warm_start.py, so it keeps that
format) and numerical prompts whose target is ``<answer>N</answer>`` with N drawn uniformly from the
split's counts, independent of the clip: it teaches the FORMAT, not the answer, and GRPO starts at
chance (1/3) with well-formed answers. Think prompts get warm_start.py's fixed think sentence.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.tiny_model import warm_start
from trainer.core.video_config import VideoConfig
from trainer.data.problem_types import MULTIPLE_CHOICE, NUMERICAL
from trainer.data.prompts import NO_THINK, THINK, reference_completion, user_text

# The numerical split's answers (scripts/make_synthetic_dataset.py, BOUNCE_COUNTS) and its files.
COUNTS = ("0", "1", "2")
NUMERICAL_STEM = "train_numerical"


@dataclass(frozen=True)
class NumericalExample:
    video: str  # absolute path
    question: str
    answer: str  # the gold number (unused by the format warm start)


def load_numerical_examples(dataset_dir: Path, stem: str = NUMERICAL_STEM) -> list[NumericalExample]:
    examples = []
    for line in (dataset_dir / f"{stem}_no_think.jsonl").read_text().splitlines():
        record = json.loads(line)
        human, gpt = record["conversations"][0]["value"], record["conversations"][1]["value"]
        answer = gpt.split("<answer>")[1].split("</answer>")[0]
        examples.append(NumericalExample(str(dataset_dir / record["video"]), human.split("\n")[1], answer))
    return examples


def numerical_conversation(example: NumericalExample, mode: str, video: VideoConfig) -> list[dict]:
    text = {"type": "text", "text": user_text(example.question, {}, mode, NUMERICAL)}
    return [{"role": "user", "content": [video.video_element(example.video), text]}]


def train_mixed(
    model: Any,
    processor: Any,
    dataset_dir: Path,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    numerical_fraction: float = 0.5,
    think_fraction: float = 0.5,
    pool_size: int = 512,
) -> list[float]:
    """warm_start.fit over batches whose prompts are numerical with probability
    ``numerical_fraction`` (target: a random count) and multiple choice otherwise (a random letter),
    each think with probability ``think_fraction``; ``pool_size`` clips of each split. Returns every
    step's loss. Deterministic for ``seed`` and the thread count."""
    mcq, options, video = warm_start.load_examples(dataset_dir, "train")
    numerical = load_numerical_examples(dataset_dir)
    letters = sorted(options)
    think = warm_start.warm_think("")
    rng = random.Random(seed)
    mcq = rng.sample(mcq, min(pool_size, len(mcq)))
    numerical = rng.sample(numerical, min(pool_size, len(numerical)))

    def draw_batch(rng: random.Random) -> list[tuple[list[dict], str, str]]:
        batch = []
        for _ in range(batch_size):
            mode = THINK if rng.random() < think_fraction else NO_THINK
            thought = think if mode == THINK else None
            if rng.random() < numerical_fraction:
                ex = rng.choice(numerical)
                target = reference_completion(NUMERICAL, rng.choice(COUNTS), {}, thought)
                batch.append((numerical_conversation(ex, mode, video), mode, target))
            else:
                ex = rng.choice(mcq)
                target = reference_completion(MULTIPLE_CHOICE, rng.choice(letters), options, thought)
                batch.append((warm_start.conversation(ex, options, mode, video), mode, target))
        return batch

    return warm_start.fit(model, processor, draw_batch, rng, steps=steps, lr=lr, seed=seed)
