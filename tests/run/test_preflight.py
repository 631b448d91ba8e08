"""The pre-flight: step-cost arithmetic checked by hand, the warnings on made-up samples (each names
its knob, a sample that can learn gets none), and the launch checks on the built-in datasets."""

from __future__ import annotations

import pytest

from trainer.core.config import build_config
from trainer.core.errors import ConfigError, DataError
from trainer.run.preflight import (
    LaunchCheck,
    PreflightReport,
    SampledCompletion,
    StepCost,
    check_launch,
    check_model_path,
    learning_warnings,
    small_dataset_notes,
)
from trainer.step.cost import GIB, ModelShape, memory_estimate, sequences_per_step

SHAPE = ModelShape(parameters=1000, trainable_parameters=600, hidden_size=8, num_layers=2, vocab_size=10)
THINK_OK = "<think>I compare the first and last frames.</think> <answer>(A) left</answer>"


def test_sequences_per_step_is_questions_times_accumulation_times_g() -> None:
    assert sequences_per_step(16, 2, 4) == 128


def test_memory_estimate_matches_a_hand_count() -> None:
    est = memory_estimate(SHAPE, 2, True, sequences_per_micro_batch=4, tokens_per_sequence=100,
                          completion_tokens=20, gradient_checkpointing=False)  # fmt: skip
    assert est.weights_gib * GIB == pytest.approx(2000)  # 1000 params x 2 bytes
    assert est.gradients_gib * GIB == pytest.approx(1200)  # 600 trainable x 2
    assert est.optimizer_gib * GIB == pytest.approx(2400)  # two AdamW moments
    assert est.reference_gib * GIB == pytest.approx(2000)
    # 4 x 100 tokens x 8 hidden x 2 layers x 34 bytes + 4 x 20 x 10 vocab x 8 bytes (float32 logits)
    assert est.activations_gib * GIB == pytest.approx(217_600 + 6_400)
    assert est.total_gib * GIB == pytest.approx(2000 + 1200 + 2400 + 2000 + 224_000)


def test_checkpointing_float32_and_no_reference_change_the_right_parts() -> None:
    est = memory_estimate(SHAPE, 4, False, sequences_per_micro_batch=1, tokens_per_sequence=10,
                          completion_tokens=0, gradient_checkpointing=True)  # fmt: skip
    assert est.weights_gib * GIB == pytest.approx(4000) and est.reference_gib == 0
    # 10 tokens x 8 x 2 layers x 2 bytes, doubled for float32
    assert est.activations_gib * GIB == pytest.approx(640)


def completion(text: str, total: float, *, mode: str = "think", cut: bool = False, tokens: int = 21):
    return SampledCompletion(
        "q", mode, "A", 0, text, tokens, cut, float(total > 0), float(total > 0.5), total
    )


def report(completions: list[SampledCompletion], spread: list[float]) -> PreflightReport:
    cost = StepCost(0, 0, 0, 0, 0, "CPU", None, memory_estimate(SHAPE, 4, False, 1, 1, 1, False), 0, 0)
    launch = LaunchCheck(
        workspace=None, model_path="m", train_records=[], eval_records=0, train_modes=("think",)
    )  # type: ignore[arg-type]
    return PreflightReport(launch, completions, 4, 1.0, 0.5, spread, cost)


CFG = build_config({"generation_max_length": 12})


def test_a_sample_that_can_learn_gets_no_warning() -> None:
    done = [
        completion(THINK_OK, 1.0),
        completion(THINK_OK, 0.3),
        completion(THINK_OK, 0.3),
        completion(THINK_OK, 1.0),
    ]
    assert learning_warnings(CFG, report(done, [0.35])) == []


def test_cut_completions_and_flat_groups_name_their_knobs() -> None:
    cut = completion("<think>I compare the first and last frames.</think> <", 0.0, cut=True, tokens=12)
    warnings = learning_warnings(CFG, report([cut] * 4, [0.0]))
    assert [w.knob for w in warnings] == ["generation_max_length", "grpo_sample_size"]
    assert (
        "4 of 4 completions were cut at generation_max_length (12 tokens) before </answer>"
        in warnings[0].message
    )
    assert "GRPO's advantages are all 0" in warnings[1].message


def test_a_model_that_does_not_write_the_datasets_format_is_flagged() -> None:
    no_think = completion("<answer>(A) left</answer>", 0.7)
    warnings = learning_warnings(CFG, report([no_think, completion(THINK_OK, 1.0)] * 2 + [no_think], [0.2]))
    assert [w.knob for w in warnings] == ["dataset_use"]
    assert "dataset_use is think mode" in warnings[0].message and "<think> in 2 of 5" in warnings[0].message
    writes_think = completion(THINK_OK, 0.7, mode="no_think")
    [warning] = learning_warnings(CFG, report([writes_think] * 4, [0.1]))
    assert warning.knob == "dataset_use" and "dataset_use is no_think mode" in warning.message


def test_launch_check_loads_datasets_and_matches_the_eval_mode(tmp_path) -> None:
    cfg = build_config({"dataset_use": "synthetic_motion_train", "eval_dataset_use": "synthetic_motion_eval",
                        "workspace": str(tmp_path)})  # fmt: skip
    launch = check_launch(cfg)
    assert (len(launch.train_records), launch.eval_records, launch.train_modes) == (2000, 200, ("think",))
    with pytest.raises(ConfigError, match="is no_think but dataset_use 'synthetic_motion_train' is think"):
        check_launch(build_config({**cfg.flat(), "eval_dataset_use": "synthetic_motion_no_think_eval"}))
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        check_launch(build_config({**cfg.flat(), "dataset_use": "nope"}))
    with pytest.raises(ConfigError, match="temporal_grpo shuffles video frames"):
        check_launch(build_config({**cfg.flat(), "dataset_use": "synthetic_motion_image_train",
                                   "eval_dataset_use": "", "temporal_grpo": True}))  # fmt: skip


def test_model_path_must_be_a_model_folder(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        check_model_path(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a model folder"):
        check_model_path(str(tmp_path))
    assert check_model_path("assets/tiny-qwen2.5-vl").endswith("assets/tiny-qwen2.5-vl")


def test_a_hub_id_is_left_to_transformers_and_a_missing_local_path_is_not(tmp_path) -> None:
    # Real users pick hub ids; only a name that can only be local must exist here.
    assert check_model_path("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    for local in ("./models/qwen", "/abs/models/qwen", "models/qwen/v2"):
        with pytest.raises(ConfigError, match="no such folder"):
            check_model_path(local)


def test_a_training_set_smaller_than_a_batch_gets_a_note_not_an_error() -> None:
    # 8 records at 16 a step: each record twice per batch, an epoch is half a step; 12: 1.5 times.
    assert small_dataset_notes(8, 16) == [
        "dataset_use has 8 records, fewer than per_device_train_batch_size 16: each batch holds every "
        "record 2 times on average (an epoch is 0.5 steps)"
    ]
    assert "every record 1.5 times on average (an epoch is 0.667 steps)" in small_dataset_notes(8, 12)[0]
    assert small_dataset_notes(16, 16) == [] and small_dataset_notes(2000, 16) == []
