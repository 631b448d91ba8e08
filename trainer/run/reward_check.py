"""Check config's part for reward functions: each one imports and, called on completions built from
the training set's own reference answers, returns one finite number (or None) per completion.

Run by :func:`trainer.run.preflight.check_launch`, so Check, Launch and ``vgrpo train --check`` refuse
a broken reward function before any model loads; the sampled pre-flight then calls the same functions
on the model's own completions (``trainer.score.scoring.score_rollouts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.core.config import TrainConfig
from trainer.core.errors import ConfigError
from trainer.data.prompts import THINK, reference_completion
from trainer.score.reward_functions import LoadedReward, RewardFunctionError, load_rewards, workspace_search

# Enough records to meet every problem type of a mixed set's first few rows, few enough to be instant.
CHECK_RECORDS = 8


def check_completions(records: Sequence[Any]) -> tuple[list[str], list[Any]]:
    """Two completions per record: its reference answer well formed (in the record's mode), and a
    reply with no tags at all. A function must handle both: the policy writes either."""
    texts, rows = [], []
    for record in records:
        think = "Let me look at the video." if record.mode == THINK else None
        texts.append(reference_completion(record.problem_type, record.answer, record.options, think))
        texts.append("I am not sure.")
        rows.extend([record, record])
    return texts, rows


def check_reward_functions(
    cfg: TrainConfig, train_records: Sequence[Any], allowed_roots: Sequence[Path] | None = None
) -> list[LoadedReward]:
    """The run's reward functions, imported and tried on :func:`check_completions` of the first
    :data:`CHECK_RECORDS` training records; ConfigError naming the function otherwise."""
    try:
        rewards = load_rewards(
            cfg.grpo.reward_specs(), allowed_roots=allowed_roots, search=workspace_search(cfg)
        )
        texts, rows = check_completions(list(train_records)[:CHECK_RECORDS])
        context = {"group_size": 2, "step": 0, "mode": [r.mode for r in rows]}
        for reward in rewards:
            reward(texts, rows, **context)
    except RewardFunctionError as exc:
        cause = exc.__cause__
        where = f" (at {_last_frame(cause)})" if cause is not None else ""
        raise ConfigError(f"grpo.rewards: {exc}{where}") from exc
    return rewards


def _last_frame(exc: BaseException) -> str:
    """``my_rewards.py:12``: where the user's function raised (the innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return "unknown place"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
