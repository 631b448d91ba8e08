"""trainer.score.reward_functions: loading a user's reward function, the checks on what it returns,
and how the run's list makes the total, against hand numbers."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from trainer.core.config import build_config
from trainer.core.errors import ConfigError
from trainer.core.reward_spec import RewardList, RewardSpec
from trainer.score.reward_functions import (
    RewardFunctionError,
    load_rewards,
    resolve_function,
    seed_rewards,
)
from trainer.score.scoring import score_rollouts

OPTIONS = {"A": "left", "B": "right"}


@dataclass
class Rec:
    answer: str
    options: dict
    mode: str = "no_think"
    problem_type: str = "multiple choice"


def _write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


BREVITY = """
def brevity(completions, records, **context):
    return [1.0 - len(text) / 100 for text in completions]

def only_free_form(completions, records, **context):
    return [1.0 if r.problem_type == "free-form" else None for r in records]

def wrong_length(completions, records, **context):
    return [0.0]

def nan(completions, records, **context):
    return [float("nan")] * len(completions)

def says_true(completions, records, **context):
    return [True] * len(completions)

def raises(completions, records, **context):
    raise KeyError("no such column")

def step_seen(completions, records, **context):
    return [float(context["step"])] * len(completions)

NOT_A_FUNCTION = 3
"""


def test_a_file_reward_is_found_in_the_working_directory_then_the_workspace(tmp_path, monkeypatch) -> None:
    workspace = tmp_path / "ws"
    _write(workspace, "my_rewards.py", BREVITY)
    monkeypatch.chdir(tmp_path)
    [loaded] = load_rewards([RewardSpec("brevity", 0.1, "my_rewards.py:brevity")], search=[workspace])
    assert loaded(["<answer>(A) left</answer>", ""], [Rec("A", OPTIONS)] * 2) == [1 - 25 / 100, 1.0]
    with pytest.raises(RewardFunctionError) as info:
        resolve_function(RewardSpec("brevity", 0.1, "other.py:brevity"), search=[workspace])
    assert str(info.value).startswith("reward brevity (other.py:brevity): no such file (looked at ")


def test_a_module_reward_is_imported_by_its_dotted_name(tmp_path, monkeypatch) -> None:
    _write(tmp_path / "team_rewards", "__init__.py", "")
    _write(tmp_path / "team_rewards", "video.py", BREVITY)
    monkeypatch.syspath_prepend(str(tmp_path))
    [loaded] = load_rewards([RewardSpec("brevity", 1.0, "team_rewards.video:brevity")])
    assert loaded(["x" * 50], [Rec("A", OPTIONS)]) == [0.5]
    sys.modules.pop("team_rewards.video", None)
    sys.modules.pop("team_rewards", None)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("r.py:wrong_length", "reward bad (r.py:wrong_length) returned 1 values for 2 completions"),
        ("r.py:nan", "reward bad (r.py:nan) returned nan for completion 0"),
        ("r.py:says_true", "reward bad (r.py:says_true) returned True (bool) for completion 0: "
         "expected a float or None"),
        ("r.py:raises", "reward bad (r.py:raises) raised KeyError: 'no such column'"),
        ("r.py:NOT_A_FUNCTION", "reward bad (r.py:NOT_A_FUNCTION): 'NOT_A_FUNCTION' is a int, "
         "not a function"),
        ("r.py:missing", "reward bad (r.py:missing): r.py has no 'missing'"),
    ],
)  # fmt: skip
def test_a_reward_that_misbehaves_is_named(tmp_path, monkeypatch, function, message) -> None:
    _write(tmp_path, "r.py", BREVITY)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RewardFunctionError) as info:
        [loaded] = load_rewards([RewardSpec("bad", 1.0, function)])
        loaded(["a", "b"], [Rec("A", OPTIONS)] * 2)
    assert str(info.value) == message


def test_a_reward_file_that_fails_to_import_is_named(tmp_path, monkeypatch) -> None:
    _write(tmp_path, "broken.py", "import not_a_module_anywhere\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RewardFunctionError) as info:
        load_rewards([RewardSpec("x", 1.0, "broken.py:f")])
    assert str(info.value).startswith(
        f"reward x (broken.py:f): importing {tmp_path / 'broken.py'} raised ModuleNotFoundError"
    )


def test_the_studios_roots_refuse_a_file_outside_the_workspace(tmp_path) -> None:
    outside = _write(tmp_path / "elsewhere", "r.py", BREVITY)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    spec = RewardSpec("brevity", 1.0, f"{outside}:brevity")
    with pytest.raises(RewardFunctionError) as info:
        load_rewards([spec], allowed_roots=[workspace])
    assert "is outside the workspace; the studio only runs reward files inside" in str(info.value)
    assert load_rewards([spec])  # from a terminal: no roots
    # An installed module is allowed; the standard library stands in for one here.
    [loaded] = load_rewards([RewardSpec("m", 1.0, "json:dumps")], allowed_roots=[workspace])
    assert loaded.fn.__name__ == "dumps"


def test_the_total_is_the_weighted_sum_and_none_adds_nothing(tmp_path, monkeypatch) -> None:
    """Two questions x G=2; rewards: format 0.3, accuracy 0.7, only_free_form 0.5 (None on MCQ).
    Row 0 (A, well formed, right): 0.3*1 + 0.7*1 + 0 = 1.0; row 1 (B, wrong): 0.3; the free-form
    rows score accuracy by ROUGE and get 0.5 from the plug-in."""
    _write(tmp_path, "r.py", BREVITY)
    monkeypatch.chdir(tmp_path)
    specs = [
        RewardSpec("format", 0.3),
        RewardSpec("accuracy", 0.7),
        RewardSpec("ff", 0.5, "r.py:only_free_form"),
    ]
    records = [Rec("A", OPTIONS), Rec("the ball rolls left", {}, problem_type="free-form")]
    texts = [
        "<answer>(A) left</answer>",
        "<answer>(B) right</answer>",
        "<answer>the ball rolls left</answer>",
        "x",
    ]
    scores = score_rollouts(texts, records, 2, load_rewards(specs))
    assert scores.per_reward["ff"] == [None, None, 1.0, 1.0]
    assert scores.per_reward["accuracy"] == [1.0, 0.0, 1.0, 0.0]
    assert scores.total.tolist() == pytest.approx([1.0, 0.3, 0.3 + 0.7 + 0.5, 0.5])
    # The seed's knobs are the same list without the plug-in.
    seed = score_rollouts(texts, records, 2, seed_rewards(0.3, 0.7))
    assert seed.total.tolist() == pytest.approx([1.0, 0.3, 1.0, 0.0])


def test_the_config_list_parses_every_form_and_names_a_wrong_entry() -> None:
    rows = [["format", "", "0.3"], ["accuracy", None, 0.7], ["brevity", "r.py:brevity", "0.1"], ["", "", ""]]
    from_rows = RewardList.parse_config("rewards", rows)
    from_yaml = RewardList.parse_config(
        "rewards", "[{name: format, weight: 0.3}, {name: accuracy, weight: 0.7}, "
        "{name: brevity, function: 'r.py:brevity', weight: 0.1}]"
    )  # fmt: skip
    assert from_rows == from_yaml == (
        RewardSpec("format", 0.3), RewardSpec("accuracy", 0.7), RewardSpec("brevity", 0.1, "r.py:brevity")
    )  # fmt: skip
    cfg = build_config({"grpo": {"rewards": [s.to_dict() for s in from_rows]}})
    assert build_config(cfg.to_dict()).grpo.rewards == from_rows  # the YAML the studio writes round-trips
    assert cfg.grpo.accuracy_weight() == 0.7
    assert build_config({}).grpo.reward_specs() == (RewardSpec("format", 0.3), RewardSpec("accuracy", 0.7))
    for raw, message in [
        ([{"name": "brevity", "weight": 1}], "rewards[0]: reward 'brevity' is not built in"),
        ([{"name": "b", "function": "r.py", "weight": 1}], "function 'r.py' must be FILE.py:NAME"),
        ([{"name": "format", "weight": -1}], "rewards[0]: weight must be a finite number >= 0, got -1.0"),
        ([{"name": "format", "weight": "lots"}], "rewards[0]: weight must be a number, got 'lots'"),
        ([{"name": "format", "weight": 1}] * 2, "reward 'format' is listed twice"),
        ([{"name": "format", "weight": 0}], "the weights add up to 0"),
        ([{"name": "format", "weigth": 1}], "rewards[0]: unknown key(s) weigth"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as info:
            build_config({"grpo": {"rewards": raw}})
        assert message in str(info.value)
