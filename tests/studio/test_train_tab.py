"""The Train tab's handlers without a browser: Check and Launch refuse the same configs with the
same message, Check on a preset shows the pre-flight, Use switches the answer-format knobs, a model
that cannot be downloaded replaces the status with why, a dataset smaller than a batch is noted."""

from __future__ import annotations

import html

import pytest
from studio_helpers import fake_supervisor

from studio import forms
from studio.models import model_label
from studio.tabs.train import TrainHandlers
from tests.helpers.hub import HINT, HUB_ID, offline_hub
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
        ({"launcher": "ray"}, "ray_address is empty: the Ray launcher needs the head's dashboard address"),
        # The studio's own database is SQLite here: a Ray run is refused before any cluster is asked.
        (
            {"launcher": "ray", "ray_address": "http://127.0.0.1:9"},
            "db: launcher ray needs a run database every node reaches",
        ),
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


@pytest.mark.parametrize("cached", ["nothing", "config only"])
def test_check_of_a_hub_model_that_cannot_be_downloaded_says_why(
    handlers: TrainHandlers, monkeypatch, tmp_path, cached
) -> None:
    """No network, HF_HUB_OFFLINE: the status said a bare red "Error" (transformers' OSError left the
    handler) over the previous status; it is replaced by the reason, the pre-flight box hidden."""
    offline_hub(monkeypatch, tmp_path / "hub", cached)
    status, box, *_ = handlers.check(*args_for(handlers, model_name_or_path=HUB_ID))
    headline = html.unescape(status.split("\n")[0])
    assert headline.startswith(
        f"**Config is valid**, but the pre-flight could not sample: model_name_or_path: {HUB_ID} could "
        f"not be downloaded: HF_HUB_OFFLINE is set and the local cache lacks it; {HINT}"
    ), status
    assert "from its published architecture: 3.75B parameters" in html.unescape(status)  # folded details
    assert box.visible is False


def test_check_of_a_dataset_smaller_than_a_batch_notes_the_repeats(handlers: TrainHandlers) -> None:
    """8 records at 16 a step: Check passed and Launch failed; now the run trains and Check says how."""
    args = args_for(handlers, dataset_use="synthetic_motion_no_think_train%0.4", eval_dataset_use="",
                    per_device_train_batch_size=16)  # fmt: skip
    status, box, rows, cost, *_ = handlers.check(*args)
    assert status.startswith("**Config is valid**"), status
    assert box.visible is True and len(rows) == 16  # 4 of the 8 questions x grpo_sample_size 4
    assert (
        "- dataset_use has 8 records, fewer than per_device_train_batch_size 16: each batch holds every "
        "record 2 times on average (an epoch is 0.5 steps)" in cost
    )


def test_the_yaml_box_follows_the_form_and_a_load_says_what_it_changed(handlers: TrainHandlers) -> None:
    import yaml

    edited = args_for(handlers, max_steps="300", grpo_beta="0.07")
    # Opened (or after Use / Reset), the box shows the form as it is, not the preset.
    box, command = handlers.form_yaml(*edited)
    shown = yaml.safe_load(box)
    assert (shown["optim"]["max_steps"], shown["grpo"]["grpo_beta"]) == (300, 0.07)
    assert "--max_steps 300" in command and "--grpo_beta 0.07" in command  # the commands follow too
    # Loading that same YAML changes nothing, and says so.
    status, *fields, _ = handlers.load_yaml(box, "no_think", *edited)
    assert status.endswith("No value in the form changed.")
    assert fields == [v if isinstance(v, bool | list) else str(v) for v in edited]  # rewards: rows
    # A stale box (the preset's YAML) would undo the edits: it still loads, but it says which.
    stale = forms.load_preset().to_yaml()
    status, *fields, _ = handlers.load_yaml(stale, "no_think", *edited)
    assert "Changed in the form: " in status
    assert "max_steps '300' -&gt; '600'" in status  # the arrow escaped for Markdown
    assert "grpo_beta '0.07' -&gt; " in status
    # A field the config refuses leaves the box as it was (Check names the field).
    import gradio as gr

    assert handlers.form_yaml(*args_for(handlers, max_steps="many")) == [gr.skip(), gr.skip()]
