"""The training form is generated from TrainConfig: every field, its default, its help; values round-trip."""

from __future__ import annotations

import dataclasses

import pytest

from studio import forms
from trainer.config import SECTIONS, TrainConfig, field_index
from trainer.errors import ConfigError
from trainer.paths import REPO_ROOT, TINY_MODEL_DIR


def test_every_config_field_is_in_the_form_with_its_default_and_help() -> None:
    fields = forms.form_fields()
    assert [f.name for f in fields] == list(field_index())
    defaults = TrainConfig().flat()
    for f in fields:
        assert f.default == defaults[f.name], f.name
        assert f.help, f"{f.name} has no help text"
        assert f.section in SECTIONS
    by_name = {f.name: f for f in fields}
    assert (by_name["grpo_alpha"].type, by_name["grpo_alpha"].default) == (float, 0.5)
    assert (by_name["grpo_sample_size"].type, by_name["grpo_sample_size"].default) == (int, 4)
    assert (by_name["bf16"].type, by_name["total_pixels"].optional) == (bool, True)
    assert by_name["grpo_logging_steps"].default == 50


def test_values_round_trip_through_config() -> None:
    cfg = dataclasses.replace(TrainConfig(), grpo=dataclasses.replace(TrainConfig().grpo, grpo_beta=0.04))
    assert forms.config_from_values(forms.field_values(cfg)) == cfg


def test_widget_values_are_coerced_like_gradio_returns_them() -> None:
    values = forms.field_values(TrainConfig())
    values.update(grpo_sample_size=8.0, max_steps=None, total_pixels=None, run_name=None, learning_rate=1e-4)
    cfg = forms.config_from_values(values)
    assert (cfg.grpo.grpo_sample_size, cfg.optim.max_steps, cfg.video.total_pixels) == (8, -1, None)
    assert (cfg.run.run_name, cfg.optim.learning_rate) == ("", 1e-4)


def test_invalid_value_raises_config_error_naming_the_field() -> None:
    values = forms.field_values(TrainConfig())
    values["grpo_sample_size"] = 1
    with pytest.raises(ConfigError, match="grpo_sample_size must be >= 2"):
        forms.config_from_values(values)


def test_preset_is_the_tiny_cpu_file_with_an_absolute_model_path() -> None:
    import yaml

    cfg = forms.load_preset()
    preset = yaml.safe_load(forms.PRESET_PATH.read_text())
    assert cfg.optim.max_steps == preset["optim"]["max_steps"]
    assert cfg.grpo.generation_max_length == preset["grpo"]["generation_max_length"]
    assert cfg.data.dataset_use == preset["data"]["dataset_use"]
    # The preset names the model relative to the project; the form gets the absolute folder.
    assert preset["model"]["model_name_or_path"] == "assets/tiny-qwen2.5-vl"
    assert cfg.model.model_name_or_path == str(TINY_MODEL_DIR)


def test_missing_preset_falls_back_to_defaults(tmp_path) -> None:
    assert forms.load_preset(tmp_path / "none.yaml") == TrainConfig()
    assert TrainConfig().model.model_name_or_path == str(REPO_ROOT / "assets" / "tiny-qwen2.5-vl")


def test_command_line_lists_only_changed_fields() -> None:
    cfg = forms.config_from_values({**forms.field_values(TrainConfig()), "grpo_beta": 0.04, "bf16": True})
    assert forms.command_line(cfg) == "vgrpo train --bf16 true --grpo_beta 0.04"
    assert forms.command_line(TrainConfig()) == "vgrpo train"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # see gradio_loops
def test_build_form_makes_one_widget_per_field_with_help_as_info(gradio_loops: None) -> None:
    import gradio as gr

    with gr.Blocks():
        widgets = forms.build_form(forms.field_values(TrainConfig()))
    assert list(widgets) == list(field_index())
    assert isinstance(widgets["bf16"], gr.Checkbox) and isinstance(widgets["lora_r"], gr.Number)
    assert widgets["lora_r"].precision == 0
    assert isinstance(widgets["dataset_use"], gr.Textbox)
    assert widgets["grpo_alpha"].value == 0.5
    assert widgets["grpo_alpha"].info == field_index()["grpo_alpha"][1].metadata["help"]
    assert widgets["grpo_alpha"].elem_id == "train-grpo_alpha"
