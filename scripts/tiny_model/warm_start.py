"""Format warm start: a short supervised pass that teaches the answer FORMAT, not the answer.

Targets are ``<think>I compare the first and last frames.</think> <answer>(C) up</answer>`` (think
prompts) or ``<answer>(C) up</answer>`` (no_think prompts) with the letter drawn at random,
independent of the video, so GRPO starts from parseable answers at chance accuracy. The think text
is one fixed, short sentence: every token of it but the letter is certain, so sampling at
temperature 1.0 stays well formed (a think text naming the square's colour left the model unsure
there, and at temperature 1.0 it drifted into junk tokens after 300 steps).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.video_config import VideoConfig
from trainer.data.prompts import NO_THINK, THINK, answer_text, user_text

logger = logging.getLogger(__name__)

COLOUR_RE = re.compile(r"The (\w+) square")


@dataclass(frozen=True)
class Example:
    video: str  # absolute path
    question: str
    colour: str
    letter: str  # the gold answer (unused by the format warm start)


def warm_think(colour: str) -> str:
    """The warm-start think text; it does not depend on the clip (``colour`` is kept for experiments)."""
    return "I compare the first and last frames."


def load_examples(dataset_dir: Path, split: str) -> tuple[list[Example], dict[str, str], VideoConfig]:
    meta = json.loads((dataset_dir / "dataset.json").read_text())
    options = {chr(ord("A") + i): text for i, text in enumerate(meta["options"])}
    examples = []
    for line in (dataset_dir / f"{split}.jsonl").read_text().splitlines():
        record = json.loads(line)
        human, gpt = record["conversations"][0]["value"], record["conversations"][1]["value"]
        question = human.split("\n")[1]
        colour = COLOUR_RE.search(gpt).group(1)  # type: ignore[union-attr]
        letter = gpt.split("<answer>(")[1][0]
        examples.append(Example(str(dataset_dir / record["video"]), question, colour, letter))
    return examples, options, VideoConfig(**meta["video"])


def conversation(example: Example, options: dict[str, str], mode: str, video: VideoConfig) -> list[dict]:
    text = {"type": "text", "text": user_text(example.question, options, mode)}
    return [{"role": "user", "content": [video.video_element(example.video), text]}]


def completion_labels(batch: Any) -> Any:
    """Labels = input_ids on completion tokens (incl. the closing <|im_end|>), -100 elsewhere.

    build_inputs left-pads the prompts to one length P and right-pads the completions after them:
    completion token t of every row sits at P + t, ``completion_mask`` (B, T) marks the real ones.
    """
    import torch

    ids = batch["input_ids"]
    prompt_len = int(batch["prompt_lengths"][0])
    completion = torch.where(batch["completion_mask"].bool(), ids[:, prompt_len:], -100)
    return torch.cat([torch.full_like(ids[:, :prompt_len], -100), completion], dim=1)


def train(
    model: Any,
    processor: Any,
    dataset_dir: Path,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    pool_size: int = 512,
    split: str = "train",
    think_fraction: float = 0.5,
    answer_fn: Any = None,
    max_seconds: float | None = None,
    pixels_per_token: int = 28 * 28,
) -> list[float]:
    """AdamW on the whole model over a random pool of ``pool_size`` train clips (format needs few; a
    small pool keeps decoding cheap); returns the loss of every step. ``answer_fn(example, rng)``
    picks the target letter (default: uniformly at random — the format warm start); ``max_seconds``
    stops early once that much wall time is spent. The dataset's pixel budgets are for 28 px visual
    tokens; ``pixels_per_token`` scales them to the family's (the same tokens per frame)."""
    examples, options, video = load_examples(dataset_dir, split)
    video = video.for_token_size(28 * 28, pixels_per_token)
    letters = sorted(options)
    rng = random.Random(seed)
    examples = rng.sample(examples, min(pool_size, len(examples)))

    def draw_batch(rng: random.Random) -> list[tuple[list[dict], str, str]]:
        batch = []
        for ex in rng.sample(examples, batch_size):
            mode = THINK if rng.random() < think_fraction else NO_THINK
            letter = answer_fn(ex, rng) if answer_fn else rng.choice(letters)
            target = answer_text(letter, options, warm_think(ex.colour) if mode == THINK else None)
            batch.append((conversation(ex, options, mode, video), mode, target))
        return batch

    return fit(model, processor, draw_batch, rng, steps=steps, lr=lr, seed=seed, max_seconds=max_seconds)


def fit(
    model: Any,
    processor: Any,
    draw_batch: Callable[[random.Random], list[tuple[list[dict], str, str]]],
    rng: random.Random,
    steps: int,
    lr: float,
    seed: int,
    max_seconds: float | None = None,
) -> list[float]:
    """The supervised loop: ``draw_batch(rng)`` gives (conversation, mode, target completion) triples
    for one step; AdamW on the whole model, warm-up then linear decay; returns every step's loss."""
    import torch

    from trainer.data.inputs import build_inputs, continuation, opened_block, render_prompts
    from trainer.data.video import DecodeCache

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (1 - s / steps) + 0.05)
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    # Each clip is seen many times: decode it once.
    cache = DecodeCache(max_mb=2048)
    for step in range(steps):
        convs, modes, targets = (list(column) for column in zip(*draw_batch(rng), strict=True))
        # A template that opens the think block itself (Qwen3.5) gets the rest of the answer.
        openings = [opened_block(text) for text in render_prompts(processor, convs, modes)]
        targets = [continuation(t, o) for t, o in zip(targets, openings, strict=True)]
        batch = build_inputs(processor, convs, completions=targets, cache=cache, modes=modes)
        loss = supervised_step(model, opt, batch)
        sched.step()
        losses.append(loss)
        elapsed = time.perf_counter() - t0
        if step % 25 == 0 or step == steps - 1:
            logger.info("step %d/%d loss %.4f (%.1f s)", step, steps, loss, elapsed)
        if max_seconds is not None and elapsed > max_seconds:
            logger.info("stopping at step %d: %.1f s budget spent", step, max_seconds)
            break
    model.eval()
    return losses


# The processor outputs a forward takes besides ids and masks; second_per_grid_ts only Qwen2.5-VL's
# processor gives (Qwen2-VL's rope index ignores the frames' timing, Qwen3-VL reads timestamps).
VISION_INPUTS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def supervised_step(model: Any, opt: Any, batch: Any) -> float:
    """One AdamW step of next-token loss on the completion tokens; mm_token_type_ids makes the
    forward use 3-D (mrope) positions for the video tokens. Any Qwen2-style family."""
    import torch

    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        labels=completion_labels(batch),
        **{key: batch[key] for key in VISION_INPUTS if key in batch},
    )
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return out.loss.item()
