"""Reward files in the studio: who may upload one, where it lands, and that Check and Launch accept
reward files only inside the workspace."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from studio_helpers import fake_supervisor

from studio import forms, reward_files
from studio.tabs.train import TrainHandlers
from trainer.core.errors import ConfigError

BREVITY = (
    "def brevity(completions, records, **context):\n    return [1.0 / (1 + len(c)) for c in completions]\n"
)


@pytest.mark.parametrize(
    ("host", "has_login", "allowed"),
    [
        ("127.0.0.1", False, True),
        ("127.0.0.2", False, True),  # all of 127/8 is loopback
        ("localhost", False, True),
        ("::1", False, True),
        ("0.0.0.0", False, False),
        ("192.168.1.20", False, False),
        ("studio.example.org", False, False),
        (None, False, False),  # built but not launched by launch_app: unknown, refused
        ("0.0.0.0", True, True),  # --auth
        (None, True, True),
    ],
)
def test_uploads_need_a_loopback_address_or_a_login(host: str | None, has_login: bool, allowed: bool) -> None:
    assert reward_files.is_upload_allowed(host, has_login) is allowed


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / "upload" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_a_reward_file_lands_in_the_workspace_and_is_never_overwritten(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    stored = reward_files.store_reward_file(
        write(tmp_path, "my rewards.py", BREVITY + "def _helper(): pass\n"), ws
    )
    assert stored.path == (ws / "rewards" / "my_rewards.py").resolve() and stored.is_new
    assert stored.relative == "rewards/my_rewards.py" and stored.functions == ("brevity",)
    assert stored.path.read_text().startswith("def brevity(")
    # The same file again: nothing changes; other content under that name: refused, the old file kept.
    again = reward_files.store_reward_file(
        write(tmp_path, "my rewards.py", BREVITY + "def _helper(): pass\n"), ws
    )
    assert again.is_new is False
    with pytest.raises(ConfigError, match="rewards/my_rewards.py already exists in the workspace with other"):
        reward_files.store_reward_file(write(tmp_path, "my rewards.py", "def other(c, r): return []\n"), ws)
    assert stored.path.read_text().startswith("def brevity(")
    assert [p.name for p in (ws / "rewards").iterdir()] == ["my_rewards.py"]  # no partial file left


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rewards.txt", BREVITY, "rewards.txt: a reward file must be a Python file ending in .py"),
        (
            "big.py",
            "#" * 300_000,
            "big.py: 300,000 bytes is more than a reward file may hold (262,144 bytes)",
        ),
        ("bad.py", "def f(:\n", "bad.py is not valid Python: line 1"),
        ("latin.py", b"# \xe9\n", "latin.py: not UTF-8 text"),
    ],
)
def test_a_wrong_upload_is_refused_naming_the_file(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        reward_files.store_reward_file(write(tmp_path, name, content), tmp_path / "ws")
    assert message in str(err.value)
    assert not (tmp_path / "ws" / "rewards").exists()


def test_the_upload_button_says_what_to_type_or_why_it_refused(ctx, tmp_path: Path) -> None:
    handlers = TrainHandlers(ctx, fake_supervisor(ctx))
    upload = str(write(tmp_path, "brevity.py", BREVITY))
    ctx.host, ctx.has_login = "0.0.0.0", False
    refused = handlers.upload_reward(upload)
    assert refused.startswith("**Reward file refused:**") and "`--auth USER:PASSWORD`" in refused
    assert not (ctx.workspace / "rewards").exists()
    ctx.host = "127.0.0.1"
    said = handlers.upload_reward(upload)
    assert "Type its function as `rewards/brevity.py:brevity`" in said
    assert (ctx.workspace / "rewards" / "brevity.py").read_text() == BREVITY
    wrong = handlers.upload_reward(str(write(tmp_path, "notes.md", "# hi")))
    assert wrong.startswith("**Reward file refused:**") and "must be a Python file ending in .py" in wrong


def args_with_rewards(handlers: TrainHandlers, rows: list[list[object]]) -> list[object]:
    values = {**forms.field_values(forms.preset_for_mode("no_think")), "rewards": rows}
    return [values[n] for n in handlers.names]


def test_check_and_launch_refuse_a_reward_file_outside_the_workspace(ctx, tmp_path: Path) -> None:
    handlers = TrainHandlers(ctx, fake_supervisor(ctx))
    outside = write(tmp_path, "elsewhere.py", BREVITY)
    args = args_with_rewards(handlers, [["accuracy", "", 1.0], ["brevity", f"{outside}:brevity", 0.1]])
    # The same headline (the folded details hold each handler's own traceback: the reward check chains
    # the loader's error, so a user's failing function shows its own frame).
    check_status = handlers.check(*args)[0].split("\n\n<details>")[0]
    assert check_status == handlers.launch(*args)[0].split("\n\n<details>")[0]
    assert check_status.startswith("**Config error:** ") and "brevity" in check_status
    assert "elsewhere.py is outside the workspace; the studio only runs reward files inside" in check_status
    assert f"inside {ctx.workspace}" in html.unescape(handlers.check(*args)[0])  # in full in the details
    assert ctx.store.list_runs() == []


def test_check_accepts_an_uploaded_reward_file_and_names_a_wrong_row(ctx, tmp_path: Path) -> None:
    handlers = TrainHandlers(ctx, fake_supervisor(ctx))
    ctx.host = "127.0.0.1"
    handlers.upload_reward(str(write(tmp_path, "brevity.py", BREVITY)))
    args = args_with_rewards(
        handlers, [["accuracy", "", 1.0], ["brevity", "rewards/brevity.py:brevity", 0.1]]
    )
    status = handlers.check(*args)[0]
    assert status.startswith("**Config is valid**"), status
    bad = args_with_rewards(handlers, [["accuracy", "", 1.0], ["brevity", "", 0.1]])
    status = handlers.check(*bad)[0]
    assert (
        status.startswith("**Config error:** ") and "rewards[1]: reward 'brevity' is not built in" in status
    )
