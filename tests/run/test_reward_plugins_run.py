"""A user's reward function in a real run of the tiny model: its metric reaches the run database with
the values it returned, Check refuses a broken one naming it, and one that raises mid-run fails the
run with its own traceback (never a hang or a silent 0)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.core.config import build_config, load_yaml, merge
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT
from trainer.run.preflight import check_launch
from trainer.rundb import RunStore
from trainer.score.reward_functions import RewardFunctionError

REWARDS = """
import json, os

def brevity(completions, records, **context):
    values = [round(1.0 - len(text) / 40, 4) for text in completions]
    # What the function returned, per call, for the test to compare with the run database.
    with open(os.environ["REWARD_LOG"], "a") as log:
        log.write(json.dumps({"step": context["step"], "values": values}) + "\\n")
    return values

def explodes_at_step_2(completions, records, **context):
    if context["step"] >= 2:
        return {"no": "list"}["list"]
    return [0.0] * len(completions)

def explodes_at_check(completions, records, **context):
    return [1.0 / 0 for _ in completions]
"""


def _argv(ws: Path, rewards: str, *extra: str) -> list[str]:
    return ["train", "--config", str(REPO_ROOT / "configs" / "tiny_cpu.yaml"), "--workspace", str(ws),
            "--dataset_use", "synthetic_motion_no_think_train%5", "--eval_dataset_use", "",
            "--per_device_train_batch_size", "2", "--max_steps", "3", "--save_steps", "100",
            "--dynamic_sampling", "false", "--grpo_logging_steps", "1", "--num_processes", "1",
            "--output_dir", str(ws / "out"), "--rewards", rewards, *extra]  # fmt: skip


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "team_rewards.py").write_text(textwrap.dedent(REWARDS))
    monkeypatch.setenv("REWARD_LOG", str(tmp_path / "reward_log.jsonl"))
    return ws


@pytest.mark.slow
def test_a_plugin_rewards_metric_is_the_mean_of_what_it_returned(workspace: Path, capsys) -> None:
    rewards = ("[{name: format, weight: 0.3}, {name: accuracy, weight: 0.7}, "
               "{name: brevity, function: 'team_rewards.py:brevity', weight: 0.1}]")  # fmt: skip
    assert main(_argv(workspace, rewards)) == 0, capsys.readouterr().err[-2000:]
    store = RunStore(f"sqlite:///{workspace / 'runs.db'}")
    [run] = store.list_runs()
    series = store.metrics_since(run.id)
    calls = [
        json.loads(line) for line in Path(workspace.parent / "reward_log.jsonl").read_text().splitlines()
    ]
    assert calls[0]["step"] == 0  # Check tried it on reference answers before the run
    by_step = {c["step"]: c["values"] for c in calls if c["step"] > 0}
    assert sorted(by_step) == [1, 2, 3]
    logged = dict(zip(series["reward/brevity"].steps, series["reward/brevity"].values, strict=True))
    for step, values in by_step.items():
        assert logged[step] == pytest.approx(sum(values) / len(values))
    # The rollout rows carry it too, one value per completion, the values the function returned.
    rollouts = store.rollouts(run.id, step=2)
    assert sorted(r.rewards["brevity"] for r in rollouts) == sorted(by_step[2])
    assert {tuple(sorted(r.rewards)) for r in rollouts} == {("accuracy", "brevity", "format")}
    # total = 0.3 format + 0.7 accuracy + 0.1 brevity, per completion.
    for r in rollouts:
        expected = 0.3 * r.rewards["format"] + 0.7 * r.rewards["accuracy"] + 0.1 * r.rewards["brevity"]
        assert r.total_reward == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_a_reward_that_raises_mid_run_fails_the_run_with_its_traceback(workspace: Path) -> None:
    rewards = (
        "[{name: accuracy, weight: 1}, "
        "{name: boom, function: 'team_rewards.py:explodes_at_step_2', weight: 1}]"
    )
    # A crash, as any other: the exception leaves `vgrpo train` (exit 1 with its traceback as a program).
    with pytest.raises(RewardFunctionError):
        main(_argv(workspace, rewards))
    [run] = RunStore(f"sqlite:///{workspace / 'runs.db'}").list_runs()
    assert run.status == "failed"
    assert run.error == (
        "RewardFunctionError: reward boom (team_rewards.py:explodes_at_step_2) raised KeyError: 'list'"
    )
    # The user's own frame is in the stored traceback, with its line.
    assert 'team_rewards.py", line 13, in explodes_at_step_2' in run.traceback
    assert "KeyError: 'list'" in run.traceback
    assert RunStore(f"sqlite:///{workspace / 'runs.db'}").metrics_since(run.id)[
        "grpo/total_reward"
    ].steps == (1,)


def test_check_refuses_a_reward_that_fails_on_the_reference_answers(workspace: Path) -> None:
    base = load_yaml(REPO_ROOT / "configs" / "tiny_cpu.yaml")
    div = {"name": "div", "function": "team_rewards.py:explodes_at_check", "weight": 1}
    values = {"workspace": str(workspace), "eval_dataset_use": "", "rewards": [div]}
    cfg = build_config(merge(base, values))
    with pytest.raises(ConfigError) as info:
        check_launch(cfg)
    assert str(info.value) == (
        "grpo.rewards: reward div (team_rewards.py:explodes_at_check) raised ZeroDivisionError: "
        "float division by zero (at team_rewards.py:17)"
    )
    elsewhere = {"name": "b", "function": f"{workspace / 'team_rewards.py'}:brevity", "weight": 1}
    outside = build_config(merge(base, {**values, "rewards": [elsewhere]}))
    with pytest.raises(ConfigError, match="is outside the workspace"):
        check_launch(outside, reward_roots=[workspace / "elsewhere"])
