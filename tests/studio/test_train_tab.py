"""The Train tab's handlers without a browser: Check and Launch refuse the same configs with the
same message, Check on a preset shows the pre-flight, Use switches the answer-format knobs."""

from __future__ import annotations

import html

import pytest
from studio_helpers import fake_supervisor

from studio import forms
from studio.models import model_label
from studio.tabs.train import TrainHandlers
from trainer.core.paths import TINY_MODEL_DIR
from trainer.model.families import FAMILIES


@pytest.fixture
def handlers(ctx) -> TrainHandlers:
    return TrainHandlers(ctx, fake_supervisor(ctx))


def args_for(handlers: TrainHandlers, **changes: object) -> list[object]:
    values = {**forms.field_values(forms.preset_for_mode("no_think")), **changes}
    return [values[n] for n in handlers.names]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset_use": "synthetic_motion_trian"}, "unknown dataset 'synthetic_motion_trian'"),
        ({"eval_dataset_use": "synthetic_motion_eval"}, "eval_dataset_use 'synthetic_motion_eval' is think"),
        ({"model_name_or_path": "/no/such/model"}, "model_name_or_path: no such folder /no/such/model"),
        ({"grpo_sample_size": "2.5"}, "grpo_sample_size: expected an integer, got '2.5'"),
        ({"total_pixels": "0"}, "total_pixels (0) must be >= max_pixels"),
    ],
)
def test_check_and_launch_refuse_the_same_configs(handlers: TrainHandlers, ctx, changes, message) -> None:
    args = args_for(handlers, **changes)
    check_status = handlers.check(*args)[0]
    launch_status = handlers.launch(*args)[0]
    assert check_status == launch_status and check_status.startswith("**Config error:** ")
    assert message in html.unescape(check_status)
    assert ctx.store.list_runs() == []  # nothing was started


def test_use_then_check_on_the_think_dataset_shows_sampled_completions(handlers: TrainHandlers) -> None:
    args = args_for(handlers)
    status, mode, *updates = handlers.use(["synthetic_motion_train"], 100, "no_think", *args)
    assert mode == "think" and "generation_max_length 12 -> 32" in status
    values = {
        n: (u if isinstance(u, str | bool) else a)
        for n, u, a in zip(handlers.names, updates, args, strict=True)
    }
    status, box, rows, cost, yaml_text, cmd, download = handlers.check(*[values[n] for n in handlers.names])
    assert status.startswith("**Config is valid** and the pre-flight says the run can learn"), status
    assert len(rows) == 16 and all("</answer>" in row[3] for row in rows)
    assert "prompt tokens per question" in cost and "memory estimate on CPU" in cost
    assert "generation_max_length: 32" in yaml_text and "--check" in cmd
    assert download.endswith(".yaml")


def test_check_on_the_think_dataset_with_the_no_think_budget_names_the_knob(handlers: TrainHandlers) -> None:
    args = args_for(handlers, dataset_use="synthetic_motion_train", eval_dataset_use="synthetic_motion_eval")
    status = handlers.check(*args)[0]
    assert status.startswith("**Config is valid**, but the pre-flight warns the run cannot learn")
    assert "- **generation_max_length**: 16 of 16 completions were cut" in status


def test_the_tiny_model_is_labelled_as_the_presets_spell_it() -> None:
    assert model_label(str(TINY_MODEL_DIR)) == "assets/tiny-qwen2.5-vl"
    assert model_label(str(TINY_MODEL_DIR), FAMILIES["qwen2_5_vl"]) == "assets/tiny-qwen2.5-vl — Qwen2.5-VL"
    assert model_label("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert model_label("/models/base") == "/models/base"
