"""End-to-end runs of the GRPO loop on the embedded tiny model: what lands in the run database and
on disk, exact resume after SIGTERM, and a crash leaving the run failed with its traceback."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.core.paths import TINY_MODEL_DIR
from trainer.run.loop import train
from trainer.rundb import ENDED_EARLY_EVENT, RunAborted, RunStore

pytestmark = pytest.mark.slow


def tiny_config(tmp_path: Path, **overrides):
    values = {
        "model_name_or_path": str(TINY_MODEL_DIR),
        "dataset_use": "synthetic_motion_train%5",
        "workspace": str(tmp_path / "ws"),
        "output_dir": str(tmp_path / "out"),
        "run_name": "tiny",
        "fps": 8.0,
        "max_frames": 8,
        "min_pixels": 3136,
        "max_pixels": 3136,
        "grpo_sample_size": 2,
        "generation_max_length": 12,
        "grpo_beta": 0.04,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "lr_scheduler_type": "cosine",
        "save_steps": 2,
        "grpo_logging_steps": 2,
        "seed": 7,
        "num_threads": 1,
    }
    values.update(overrides)
    return build_config(values)


def test_a_short_run_fills_the_run_database_and_saves_a_loadable_checkpoint(tmp_path) -> None:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    cfg = tiny_config(tmp_path, eval_dataset_use="synthetic_motion_eval", eval_max_records=4)
    outcome = train(cfg)
    assert outcome.steps == 2 and outcome.final_checkpoint == tmp_path / "out" / "checkpoint-2"

    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    run = store.get_run(outcome.run_id)
    assert (run.name, run.status) == ("tiny", "finished")
    series = store.metrics_since(run.id)
    for name in (*mk.SEED_GRPO_METRICS, mk.LOSS, mk.LEARNING_RATE, mk.CLIP_RATIO, mk.TIME_GENERATE_S):
        assert list(series[name].steps) == [1, 2], name
    assert 0.0 <= series[mk.FORMAT_REWARD].values[0] <= 1.0
    assert list(series[mk.EVAL_ACCURACY].steps) == [2]
    # Rollouts of step 1 and of every grpo_logging_steps (2): 2 prompts x G=2 each.
    assert store.rollout_steps(run.id) == [1, 2]
    rows = store.rollouts(run.id, step=1)
    assert len(rows) == 4 and sorted(r.group_index for r in rows) == [0, 0, 1, 1]
    assert all(r.correct_letter in r.options for r in rows)
    [ckpt] = store.checkpoints(run.id)
    assert (ckpt.step, ckpt.path) == (2, str(outcome.final_checkpoint))
    [evaluation] = store.evaluations(run.id)
    assert evaluation.accuracy == outcome.eval.accuracy and len(evaluation.results) == 4

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(outcome.final_checkpoint)
    processor = AutoProcessor.from_pretrained(outcome.final_checkpoint)
    assert model.config.video_token_id == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")


@pytest.mark.parametrize("dynamic_sampling", [False, True])
def test_sigterm_saves_and_aborts_and_resume_continues_exactly(tmp_path, dynamic_sampling: bool) -> None:
    steps = 4
    extra = {"dynamic_sampling": dynamic_sampling}
    full = train(tiny_config(tmp_path / "a", max_steps=steps, save_steps=10, **extra))

    def stop_after_two(step: int, total: int, metrics: dict) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = tiny_config(tmp_path / "b", max_steps=steps, save_steps=10, **extra)
    with pytest.raises(RunAborted):
        train(cfg, progress=stop_after_two)
    store = RunStore(f"sqlite:///{tmp_path / 'b' / 'ws' / 'runs.db'}")
    [run] = store.list_runs()
    assert run.status == "aborted"
    assert (tmp_path / "b" / "out" / "checkpoint-2" / "trainer_state.json").is_file()

    resumed = train(
        tiny_config(tmp_path / "b", max_steps=steps, save_steps=10, resume_from_checkpoint="latest", **extra)
    )
    assert resumed.run_id == run.id and store.get_run(run.id).status == "finished"
    compared = [
        mk.TOTAL_REWARD,
        mk.FORMAT_REWARD,
        mk.LOSS,
        mk.KL_DIV,
        mk.POLICY_SEQ_LOG_PROB,
        mk.LEARNING_RATE,
    ]
    expected = {h["step"]: {k: h[k] for k in compared} for h in full.history}
    got = {h["step"]: {k: h[k] for k in compared} for h in resumed.history}
    assert sorted(got) == [3, 4]
    for step in (3, 4):
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step
    # The resumed run wrote into the same run: one point per (step, name), steps 1..4.
    assert list(store.metrics_since(run.id)[mk.TOTAL_REWARD].steps) == [1, 2, 3, 4]


def test_a_crash_marks_the_run_failed_with_its_traceback(tmp_path) -> None:
    cfg = tiny_config(tmp_path, model_name_or_path=str(tmp_path / "no-such-model"))
    with pytest.raises(Exception) as info:
        train(cfg)
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    [run] = store.list_runs()
    assert run.status == "failed"
    assert "no-such-model" in run.error
    assert "Traceback" in run.traceback and type(info.value).__name__ in run.traceback


def test_temporal_grpo_logs_ordered_and_shuffled_accuracy(tmp_path) -> None:
    outcome = train(tiny_config(tmp_path, temporal_grpo=True, max_steps=1))
    first = outcome.history[0]
    for name in (mk.TEMPORAL_ACC_ORDERED, mk.TEMPORAL_ACC_SHUFFLED, mk.TEMPORAL_BONUS_RATE):
        assert 0.0 <= first[name] <= 1.0
    # Only correct ordered completions can earn the bonus.
    assert first[mk.TEMPORAL_BONUS_RATE] <= first[mk.TEMPORAL_ACC_ORDERED] + 1e-9
    # With the bonus, the logged accuracy reward can exceed the plain accuracy.
    assert first[mk.ACCURACY_REWARD] == pytest.approx(
        first[mk.TEMPORAL_ACC_ORDERED] + 0.3 * first[mk.TEMPORAL_BONUS_RATE]
    )


def test_dynamic_sampling_trains_on_groups_whose_rewards_differ(tmp_path) -> None:
    cfg = tiny_config(
        tmp_path, dynamic_sampling=True, max_sampling_rounds=4, max_steps=3, grpo_logging_steps=1
    )
    outcome = train(cfg)
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    [run] = store.list_runs()
    rounds = {h["step"]: h[mk.SAMPLING_ROUNDS] for h in outcome.history}
    assert all(1 <= r <= 4 for r in rounds.values())
    # With G=2 at chance accuracy about half the groups agree: some step needed a second round.
    assert max(rounds.values()) > 1
    for step in (1, 2, 3):
        groups: dict[int, set[float]] = {}
        for row in store.rollouts(run.id, step=step):
            groups.setdefault(row.prompt_id, set()).add(row.total_reward)
        assert groups, step
        # Every group kept has a reward spread, unless the step ran out of rounds (then it trains on
        # its last round as sampled).
        if rounds[step] < 4:
            assert all(len(rewards) > 1 for rewards in groups.values()), (step, groups)


def test_early_stop_ends_at_the_first_window_that_reaches_the_accuracy_then_saves_and_evaluates(
    tmp_path,
) -> None:
    # From a chance-level start, a mean of 0.4 over 3 steps (12 completions) comes after a few
    # dozen steps, not at once (seed 7: step 20). no_think: <answer>X</answer> fits 12 tokens.
    window, bar = 3, 0.4
    cfg = tiny_config(
        tmp_path, dataset_use="synthetic_motion_no_think_train%5", max_steps=60, save_steps=1000,
        early_stop_accuracy=bar, early_stop_window=window, eval_dataset_use="synthetic_motion_no_think_eval",
        eval_max_records=4,
    )  # fmt: skip
    outcome = train(cfg)
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    run = store.get_run(outcome.run_id)
    acc = store.metrics_since(run.id)[mk.ACCURACY_REWARD]
    assert list(acc.steps) == list(range(1, outcome.steps + 1)) and window < outcome.steps < 60
    means = [sum(acc.values[i - window : i]) / window for i in range(window, outcome.steps + 1)]
    assert means[-1] >= bar and all(m < bar for m in means[:-1]), means
    assert run.status == "finished"
    [event] = [e for e in store.events(run.id) if e.kind == ENDED_EARLY_EVENT]
    assert f"at step {outcome.steps}" in event.message and f"early_stop_accuracy {bar}" in event.message
    assert outcome.final_checkpoint == tmp_path / "out" / f"checkpoint-{outcome.steps}"
    assert [e.accuracy for e in store.evaluations(run.id)] == [outcome.eval.accuracy]


def test_a_time_budget_runs_the_warmup_over_the_budget_and_reaches_the_full_rate(tmp_path) -> None:
    # Only a time budget ends the run (max_steps 1000 would take minutes): the 0.2 warmup lasts
    # 0.2 x 4 s = 0.8 s of training, not 200 steps, so the later steps train at the full rate.
    budget_s, peak = 4.0, 1e-3
    cfg = tiny_config(
        tmp_path, max_steps=1000, save_steps=1000, max_train_seconds=budget_s, warmup_ratio=0.2,
        lr_scheduler_type="constant_with_warmup", learning_rate=peak,
    )  # fmt: skip
    outcome = train(cfg)
    lrs = [h[mk.LEARNING_RATE] for h in outcome.history]
    assert 2 <= outcome.steps < 1000 and outcome.history[-1][mk.TIME_TRAIN_S] >= budget_s
    # The first update is at t ~ 0 (the clock starts at the first step): the warmup's start.
    assert lrs[0] == pytest.approx(0.0, abs=1e-3 * peak) and lrs == sorted(lrs)
    assert lrs[-1] == pytest.approx(peak)
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    [event] = [e for e in store.events(outcome.run_id) if e.kind == ENDED_EARLY_EVENT]
    assert f"max_train_seconds 4 reached at step {outcome.steps}" in event.message
    assert [c.step for c in store.checkpoints(outcome.run_id)] == [outcome.steps]


def test_a_budget_used_up_by_an_evaluation_ends_at_its_step_with_one_checkpoint_and_one_evaluation(
    tmp_path, monkeypatch
) -> None:
    # max_train_seconds runs out during the step-2 evaluation (eval_steps 2): the run ends at step 2,
    # saving once and storing that evaluation as its final one. It used to train step 3, save
    # again and evaluate a second time: two checkpoints and two evaluations a second apart.
    import trainer.run.loop as loop

    evaluated_at: list[int] = []
    real_evaluate = loop._evaluate

    def evaluate(*args, **kwargs):
        evaluated_at.append(len(evaluated_at))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "_evaluate", evaluate)
    monkeypatch.setattr(loop, "_out_of_time", lambda *_: bool(evaluated_at))  # the evaluation took it all
    cfg = tiny_config(
        tmp_path, max_steps=4, save_steps=2, eval_steps=2, max_train_seconds=3600,
        eval_dataset_use="synthetic_motion_eval", eval_max_records=2,
    )  # fmt: skip
    outcome = train(cfg)
    assert outcome.steps == 2 and len(evaluated_at) == 1
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    assert store.get_run(outcome.run_id).status == "finished"
    [ckpt] = store.checkpoints(outcome.run_id)
    assert ckpt.step == 2 and outcome.final_checkpoint == tmp_path / "out" / "checkpoint-2"
    [evaluation] = store.evaluations(outcome.run_id)
    assert evaluation.checkpoint_id == ckpt.id and evaluation.accuracy == outcome.eval.accuracy
    acc = store.metrics_since(outcome.run_id)[mk.EVAL_ACCURACY]
    assert list(acc.steps) == [2] and list(acc.values) == [outcome.eval.accuracy]  # logged once
    [event] = [e for e in store.events(outcome.run_id) if e.kind == ENDED_EARLY_EVENT]
    assert "max_train_seconds 3600 reached at step 2" in event.message
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2"]


def test_a_mid_run_evaluation_is_logged_at_its_step_and_the_last_step_evaluates_again(tmp_path) -> None:
    cfg = tiny_config(
        tmp_path, max_steps=3, save_steps=3, eval_steps=2, eval_dataset_use="synthetic_motion_eval",
        eval_max_records=2,
    )  # fmt: skip
    outcome = train(cfg)
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    acc = store.metrics_since(outcome.run_id)[mk.EVAL_ACCURACY]
    assert list(acc.steps) == [2, 3] and acc.values[-1] == outcome.eval.accuracy
    assert outcome.history[1][mk.EVAL_ACCURACY] == acc.values[0]  # the step-2 row holds its evaluation
    [ckpt] = store.checkpoints(outcome.run_id)
    [evaluation] = store.evaluations(outcome.run_id)
    assert ckpt.step == 3 and evaluation.checkpoint_id == ckpt.id


@pytest.mark.parametrize("ending", ["ended early", "aborted"])
def test_the_last_step_of_a_run_that_ends_early_is_logged(tmp_path, monkeypatch, ending: str) -> None:
    # logging_steps 3, and the run ends at step 2 (a limit, or SIGTERM): step 2 is neither a
    # multiple of 3 nor the planned last step (4), so its metrics were never written and the
    # Monitor showed the run ending at step 1 while its checkpoint was at step 2.
    import trainer.run.loop as loop

    def stop_at_two(step: int, total: int, metrics: dict) -> None:
        if step == 2 and ending == "aborted":
            os.kill(os.getpid(), signal.SIGTERM)

    if ending == "ended early":
        monkeypatch.setattr(loop, "_early_end_reason", lambda *a: "a limit" if a[-1] == 2 else None)
    cfg = tiny_config(tmp_path, max_steps=4, logging_steps=3, save_steps=10, grpo_logging_steps=10)
    if ending == "aborted":
        with pytest.raises(RunAborted):
            train(cfg, progress=stop_at_two)
    else:
        train(cfg, progress=stop_at_two)
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    [run] = store.list_runs()
    assert [c.step for c in store.checkpoints(run.id)] == [2]
    assert list(store.metrics_since(run.id)[mk.TOTAL_REWARD].steps) == [1, 2]
