"""`python -m trainer.train` with the seed's flags, and flag errors that name the flag."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.hub import HINT, HUB_ID, offline_hub
from trainer.cli import main
from trainer.cli.train import EXIT_ABORTED, _progress_bar, budget_steps
from trainer.core import metrics_keys as mk
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.rundb import RunStore


@pytest.mark.slow
def test_the_seed_command_line_runs(tmp_path) -> None:
    cmd = [
        sys.executable, "-m", "trainer.train",
        "--model_name_or_path", str(TINY_MODEL_DIR),
        "--dataset_use", "synthetic_motion_train%5",
        "--output_dir", str(tmp_path / "out"),
        "--workspace", str(tmp_path / "ws"),
        "--grpo_alpha", "0.5", "--grpo_beta", "0.1",
        "--format_reward_weight", "0.3", "--accuracy_reward_weight", "0.7",
        "--grpo_sample_size", "4", "--grpo_logging_steps", "50", "--generation_max_length", "16",
        "--per_device_train_batch_size", "2", "--learning_rate", "2e-5", "--max_steps", "2",
        "--bf16", "False", "--gradient_checkpointing", "--fps", "8", "--max_frames", "8",
        "--min_pixels", "3136", "--max_pixels", "3136", "--num_threads", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "checkpoint-2" / "model.safetensors").is_file()
    [run] = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}").list_runs()
    assert run.status == "finished"


@pytest.mark.slow
def test_an_aborted_run_ends_with_one_line_and_its_own_exit_code(tmp_path) -> None:
    cmd = [
        sys.executable, "-m", "trainer.cli", "train",
        "--config", str(REPO_ROOT / "configs" / "tiny_cpu.yaml"), "--workspace", str(tmp_path / "ws"),
        "--dataset_use", "synthetic_motion_no_think_train%5",
        "--per_device_train_batch_size", "2", "--max_steps", "500", "--save_steps", "1000",
        "--num_processes", "1",  # the preset's 2 run under accelerate launch: its exit is torchrun's
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    db = tmp_path / "ws" / "runs.db"
    deadline = time.monotonic() + 180
    while not (db.exists() and _steps(db) >= 1):  # SIGTERM once it trains
        assert proc.poll() is None and time.monotonic() < deadline, "no step came"
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_ABORTED, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last == "vgrpo train: aborted: stopped by SIGTERM after saving a checkpoint", err[-3000:]
    assert "Traceback" not in err
    [run] = RunStore(f"sqlite:///{db}").list_runs()
    assert (run.status, run.end_reason) == ("aborted", "stopped by SIGTERM after saving a checkpoint")


@pytest.mark.slow
def test_num_processes_starts_the_command_again_under_accelerate_launch(tmp_path) -> None:
    """`vgrpo train` with ``num_processes: 2`` (the tiny presets) trains in two processes, as the
    studio's Launch does: one epoch of the dataset then takes half the steps of one process."""
    from trainer.data import load_dataset_use

    spec, batch = "synthetic_motion_no_think_train%5", 2
    num_records = len(load_dataset_use(spec, tmp_path / "ws", 42))
    cmd = [
        sys.executable, "-m", "trainer.cli", "train",
        "--config", str(REPO_ROOT / "configs" / "tiny_cpu.yaml"), "--workspace", str(tmp_path / "ws"),
        "--dataset_use", spec, "--per_device_train_batch_size", str(batch), "--max_steps", "-1",
        "--num_train_epochs", "1", "--eval_steps", "0", "--eval_max_records", "4", "--save_steps", "1000",
        "--grpo_sample_size", "2",
    ]  # fmt: skip
    assert "num_processes: 2" in (REPO_ROOT / "configs" / "tiny_cpu.yaml").read_text()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = tmp_path / "ws" / "runs.db"
    [run] = RunStore(f"sqlite:///{db}").list_runs()
    assert run.status == "finished"
    steps = -(-num_records // (2 * batch))  # two processes of `batch` records a step
    assert steps != -(-num_records // batch), num_records  # one process would take another number
    assert _steps(db) == steps, (num_records, proc.stdout[-2000:])


def _steps(db: Path) -> int:
    runs = RunStore(f"sqlite:///{db}").list_runs()
    series = runs and RunStore(f"sqlite:///{db}").metrics_since(runs[0].id, names=[mk.TOTAL_REWARD])
    return series[mk.TOTAL_REWARD].last_step or 0 if series and mk.TOTAL_REWARD in series else 0


def test_an_unknown_flag_is_named(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--grpo_alhpa", "0.5"])
    assert info.value.code == 2
    assert "--grpo_alhpa" in capsys.readouterr().err


def test_an_unknown_yaml_key_is_named(tmp_path, capsys) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("grpo:\n  grpo_alhpa: 0.5\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown config key grpo.grpo_alhpa" in capsys.readouterr().err


def test_launch_checks_the_datasets_and_the_eval_mode_before_training(tmp_path, capsys) -> None:
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main(["train", "--dataset_use", "synthetic_motion_trian", *ws]) == 2
    assert "unknown dataset 'synthetic_motion_trian'" in capsys.readouterr().err
    mixed = [
        "--dataset_use",
        "synthetic_motion_train",
        "--eval_dataset_use",
        "synthetic_motion_no_think_eval",
    ]
    assert main(["train", *mixed, *ws]) == 2
    assert "eval_dataset_use 'synthetic_motion_no_think_eval' is no_think" in capsys.readouterr().err
    assert main(["train", "--model_name_or_path", str(tmp_path / "no-model"), *ws]) == 2
    assert "model_name_or_path: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "ws" / "runs.db").exists()  # nothing started


PRESETS = {
    "no_think": REPO_ROOT / "configs" / "tiny_cpu.yaml",
    "think": REPO_ROOT / "configs" / "tiny_cpu_think.yaml",
}


@pytest.mark.parametrize("mode", ["no_think", "think"])
def test_check_on_each_tiny_preset_says_it_can_learn(tmp_path, capsys, mode) -> None:
    code = main(["train", "--config", str(PRESETS[mode]), "--workspace", str(tmp_path), "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "can learn" in out and "WARNING" not in out
    assert re.search(r"prompt tokens per question: \d+ \(16 of them video\)", out)
    assert "sequences per step: 64" in out and "memory estimate on CPU" in out


def test_check_flags_the_think_dataset_with_the_no_think_budget(tmp_path, capsys) -> None:
    argv = ["train", "--config", str(PRESETS["no_think"]), "--dataset_use", "synthetic_motion_train",
            "--eval_dataset_use", "synthetic_motion_eval", "--workspace", str(tmp_path),
            "--check"]  # fmt: skip
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert (
        "WARNING (generation_max_length): 16 of 16 completions were cut at generation_max_length (12" in out
    )
    assert "WARNING (grpo_sample_size): every reward within each of the 4 sampled groups is equal" in out
    assert not (tmp_path / "runs.db").exists()  # --check trains nothing


def test_a_dataset_smaller_than_a_batch_checks_and_trains(tmp_path, capsys) -> None:
    """8 records at per_device_train_batch_size 16 passed Check, then Launch died with a traceback
    ("batch of 16 records from a dataset of 8"): now Check notes the repeats and the run trains."""
    argv = ["train", "--config", str(PRESETS["no_think"]), "--workspace", str(tmp_path),
            "--dataset_use", "synthetic_motion_no_think_train%0.4", "--eval_dataset_use", "",
            "--per_device_train_batch_size", "16", "--grpo_sample_size", "4", "--dynamic_sampling", "false",
            "--max_steps", "2", "--save_steps", "2", "--output_dir", str(tmp_path / "out"),
            "--num_processes", "1"]  # fmt: skip  # in this process: its output is captured
    assert main([*argv, "--check"]) == 0
    out = capsys.readouterr().out
    assert "config: valid; 8 training records (no_think)" in out
    assert "dataset_use has 8 records, fewer than per_device_train_batch_size 16" in out
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "run 1: 2 steps" in out and "Traceback" not in err
    assert (tmp_path / "out" / "checkpoint-2" / "model.safetensors").is_file()


@pytest.mark.parametrize("cached", ["nothing", "config only"])
def test_check_of_a_hub_model_that_cannot_be_downloaded_ends_in_one_line(
    tmp_path, monkeypatch, capsys, cached
) -> None:
    """Offline, with the model's config.json cached but not its weights, --check printed
    transformers' OSError as a traceback; now one line says which model and why."""
    offline_hub(monkeypatch, tmp_path / "hub", cached)
    argv = ["train", "--config", str(PRESETS["no_think"]), "--workspace", str(tmp_path / "ws"),
            "--model_name_or_path", HUB_ID, "--check"]  # fmt: skip
    assert main(argv) == 2  # a config error, as the other launch checks
    err = capsys.readouterr().err
    assert (
        f"vgrpo: config error: model_name_or_path: {HUB_ID} could not be downloaded: "
        f"HF_HUB_OFFLINE is set and the local cache lacks it; {HINT}; "
        "from its published architecture: 3.75B parameters" in err
    )
    assert "Traceback" not in err


def test_help_lists_every_knob_with_its_documentation(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--grpo_alpha" in out and "Reward scale" in out and "(default: 0.5)" in out


def test_budget_steps_scales_this_attempts_pace_to_the_time_budget() -> None:
    # 12 steps in 20 s of a 60 s budget: 12 x 60 / 20 = 36.
    assert budget_steps(12, 1, 20.0, 60.0, 1_000_000) == 36
    assert budget_steps(12, 1, 20.0, 60.0, 30) == 30  # the planned steps come first
    # Resumed after step 10: steps 11 and 12 in 1 s -> 2 x 60 / 1 = 120 more.
    assert budget_steps(12, 11, 1.0, 60.0, 1_000_000) == 130
    # The step that crosses the budget: never fewer than the steps done.
    assert budget_steps(32, 1, 64.0, 60.0, 1_000_000) == 32


def test_a_time_budgeted_bar_ends_at_the_step_the_run_ended(capsys) -> None:
    bar = _progress_bar(60.0)
    for step in range(1, 11):  # 2 s a step
        bar(step, 1_000_000, {mk.TIME_TRAIN_S: 2.0 * step})
    assert bar._bar.total == 30  # 10 x 60 / 20
    for step in range(11, 33):
        bar(step, 1_000_000, {mk.TIME_TRAIN_S: 2.0 * step})
    bar.finish(32)
    bar.close()
    err = capsys.readouterr().err
    assert "32/32" in err and "1000000" not in err


def test_called_in_process_several_processes_run_as_a_child_with_the_given_arguments(
    tmp_path, monkeypatch
) -> None:
    """main(argv) from a script or a test must not replace the caller's interpreter (exec): the
    launcher runs as a child with exactly ``argv``, and its exit code is returned."""
    import trainer.cli.train as cli_train

    ran: list[list[str]] = []

    def fake_run(cmd: list[str], check: bool) -> subprocess.CompletedProcess:
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 143)

    monkeypatch.setattr(cli_train.subprocess, "run", fake_run)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    argv = ["train", "--config", str(PRESETS["no_think"]), "--workspace", str(tmp_path), "--max_steps", "3"]
    assert main(argv) == 143
    [cmd] = ran
    assert cmd[:2] == [str(Path(sys.executable).parent / "accelerate"), "launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-len(argv) - 2 :] == ["-m", "trainer.cli", *argv]
