"""The training form is generated from TrainConfig: every field, its default, its help; values round-trip."""

from __future__ import annotations

import dataclasses

import pytest

from studio import forms
from trainer.core.config import SECTIONS, TrainConfig, field_index
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.data import list_datasets


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


def test_widget_text_is_parsed_like_yaml_and_flags() -> None:
    values = forms.field_values(TrainConfig())
    values.update(grpo_sample_size="8", total_pixels="", run_name="", learning_rate="1e-4", max_frames="8.0")
    cfg = forms.config_from_values(values)
    assert (cfg.grpo.grpo_sample_size, cfg.video.total_pixels, cfg.video.max_frames) == (8, None, 8)
    assert (cfg.run.run_name, cfg.optim.learning_rate) == ("", 1e-4)
    assert isinstance(cfg.grpo.grpo_sample_size, int) and isinstance(cfg.video.max_frames, int)


@pytest.mark.parametrize(
    ("name", "typed", "message"),
    [
        ("grpo_sample_size", "2.5", "grpo_sample_size: expected an integer, got '2.5'"),
        ("format_reward_weight", "abc", "format_reward_weight: expected a number, got 'abc'"),
        ("max_steps", "", "max_steps: a value is required"),
        ("total_pixels", "0", "total_pixels (0) must be >= max_pixels"),
    ],
)
def test_typed_text_is_never_coerced(name: str, typed: str, message: str) -> None:
    values = {**forms.field_values(forms.load_preset()), name: typed}
    with pytest.raises(ConfigError) as info:
        forms.config_from_values(values)
    assert message in str(info.value)


def test_an_empty_optional_box_is_none_and_the_preset_round_trips() -> None:
    preset = forms.load_preset()
    values = forms.field_values(preset)
    assert values["total_pixels"] == "" and values["grpo_alpha"] == "0.5" and values["bf16"] is False
    assert forms.config_from_values(values) == preset


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
    think = forms.preset_for_mode("think")
    assert (think.data.dataset_use, think.data.eval_dataset_use) == (
        "synthetic_motion_train",
        "synthetic_motion_eval",
    )


def test_missing_preset_falls_back_to_defaults(tmp_path) -> None:
    assert forms.load_preset(tmp_path / "none.yaml") == TrainConfig()
    assert TrainConfig().model.model_name_or_path == str(REPO_ROOT / "assets" / "tiny-qwen2.5-vl")


def test_command_line_lists_only_changed_fields() -> None:
    cfg = forms.config_from_values({**forms.field_values(TrainConfig()), "grpo_beta": 0.04, "bf16": True})
    assert forms.command_line(cfg) == "vgrpo train --bf16 true --grpo_beta 0.04"
    assert forms.command_line(TrainConfig()) == "vgrpo train"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # see gradio_loops
def test_essentials_first_then_collapsed_sections_with_every_other_field(gradio_loops: None) -> None:
    import gradio as gr

    preset = forms.load_preset()
    values = {**forms.field_values(preset), "fps": "4.0", "lora_r": "8"}
    with gr.Blocks():
        essentials = forms.build_essentials(values)
        others, accordions = forms.build_sections(values, preset)
    assert list(essentials) == list(forms.ESSENTIALS)
    assert sorted([*essentials, *others]) == sorted(field_index())
    # Numbers are text boxes: they hand over what was typed (no rounding, no 0 for empty).
    assert isinstance(others["bf16"], gr.Checkbox) and isinstance(others["lora_r"], gr.Textbox)
    assert essentials["grpo_alpha"].value == "0.5"
    assert essentials["grpo_alpha"].info == field_index()["grpo_alpha"][1].metadata["help"]
    assert essentials["grpo_alpha"].elem_id == "train-grpo_alpha"
    assert others["total_pixels"].value == "" and others["total_pixels"].placeholder == "empty: not set"
    assert all(not acc.open for acc in accordions.values())
    assert accordions["video"].label == "Video sampling · 1 changed from the preset"
    assert accordions["model"].label == "Model · 1 changed from the preset"
    assert accordions["optim"].label == "Optimisation"


def test_changed_fields_counts_unparseable_text_as_changed() -> None:
    preset = forms.load_preset()
    values = {**forms.field_values(preset), "fps": "8", "max_frames": "x"}
    assert forms.changed_fields(values, preset, ["fps", "max_frames", "min_pixels"]) == ["max_frames"]


def test_pasted_yaml_overrides_the_preset_and_errors_name_the_key() -> None:
    preset = forms.load_preset()
    values = forms.values_from_yaml("grpo:\n  grpo_beta: 0.2\nmax_steps: 7\n", preset)
    assert (values["grpo_beta"], values["max_steps"], values["fps"]) == ("0.2", "7", "8.0")
    with pytest.raises(ConfigError, match="unknown config key 'grpo_alhpa'"):
        forms.values_from_yaml("grpo_alhpa: 1", preset)
    with pytest.raises(ConfigError, match="grpo_sample_size: expected an integer"):
        forms.values_from_yaml("grpo_sample_size: 2.5", preset)


ENTRIES = {e.name: e for e in list_datasets("/nonexistent")}  # the built-in datasets only


def test_use_on_the_think_dataset_sets_its_eval_set_and_the_think_generation_budget() -> None:
    current = forms.field_values(forms.preset_for_mode("no_think"))
    choice = forms.choose_datasets(["synthetic_motion_train"], 100, current, ENTRIES)
    think = forms.preset_for_mode("think")
    assert choice.mode == "think"
    assert choice.values["dataset_use"] == "synthetic_motion_train"
    assert choice.values["eval_dataset_use"] == "synthetic_motion_eval"
    assert choice.values["generation_max_length"] == str(think.grpo.generation_max_length)
    assert "generation_max_length 12 -> 32" in choice.message
    # Both presets sample at 0.5 (configs/tiny_cpu.yaml says why): nothing else to switch.
    assert "temperature" not in choice.values and think.grpo.temperature == 0.5


def test_use_keeps_a_generation_budget_the_user_set_and_samples_a_percent() -> None:
    current = {**forms.field_values(forms.preset_for_mode("no_think")), "generation_max_length": "64"}
    choice = forms.choose_datasets(["synthetic_motion_train"], 50, current, ENTRIES)
    assert choice.values["dataset_use"] == "synthetic_motion_train%50"
    assert "generation_max_length" not in choice.values


def test_use_without_a_matching_eval_set_clears_one_of_the_other_mode() -> None:
    current = forms.field_values(forms.preset_for_mode("no_think"))  # eval: the no_think eval set
    entries = {k: v for k, v in ENTRIES.items() if k != "synthetic_motion_eval"}
    choice = forms.choose_datasets(["synthetic_motion_train"], 100, current, entries)
    assert choice.values["eval_dataset_use"] == ""
    assert "eval_dataset_use cleared" in choice.message


def test_the_two_presets_differ_only_where_the_answer_format_needs_it() -> None:
    assert forms.mode_knobs() == ["generation_max_length"]


def test_use_on_mixed_answer_formats_changes_no_format_knob() -> None:
    current = forms.field_values(forms.preset_for_mode("no_think"))
    choice = forms.choose_datasets(
        ["synthetic_motion_train", "synthetic_motion_no_think_train"], 100, current, ENTRIES
    )
    assert choice.mode is None
    assert set(choice.values) == {"dataset_use", "eval_dataset_use"}
    assert choice.values["eval_dataset_use"] == "synthetic_motion_eval,synthetic_motion_no_think_eval"


def test_the_rewards_table_round_trips_through_config_yaml_and_back_to_rows() -> None:
    values = forms.field_values(forms.load_preset())
    assert values["rewards"] == []  # empty: the two seed weights (the table's info says so)
    values["rewards"] = [
        ["format", "", 0.2],
        ["accuracy", None, "0.7"],
        ["brevity", "rewards/brevity.py:brevity", 0.1],
        ["", "", None],  # a blank row
        ["", "", 0],  # a row the table's + added and nobody filled (its number column starts at 0)
    ]
    cfg = forms.config_from_values(values)
    assert [(s.name, s.function, s.weight) for s in cfg.grpo.reward_specs()] == [
        ("format", None, 0.2),
        ("accuracy", None, 0.7),
        ("brevity", "rewards/brevity.py:brevity", 0.1),
    ]
    # The YAML the studio writes keeps the list; loading it fills the table with the same rows.
    back = forms.values_from_yaml(cfg.to_yaml(), forms.load_preset())
    rows = [["format", "", 0.2], ["accuracy", "", 0.7], ["brevity", "rewards/brevity.py:brevity", 0.1]]
    assert back["rewards"] == rows
    assert forms.changed_fields(back, forms.load_preset(), ["rewards", "grpo_beta"]) == ["rewards"]
    assert (
        forms.changed_fields(forms.field_values(forms.load_preset()), forms.load_preset(), ["rewards"]) == []
    )
    # The command line passes the list as JSON, which the flag's parser reads back.
    cmd = forms.command_line(cfg)
    assert '--rewards \'[{"name": "format", "function": null, "weight": 0.2}, ' in cmd
    assert forms.value_text(values["rewards"]) == (
        "[format 0.2, accuracy 0.7, brevity rewards/brevity.py:brevity 0.1]"
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["brevity", "", 1], "rewards[1]: reward 'brevity' is not built in (format, accuracy)"),
        (["format", "", -0.5], "rewards[1]: weight must be a finite number >= 0, got -0.5"),
        (["mine", "my.py", 1], "rewards[1]: function 'my.py' must be FILE.py:NAME or package.module:NAME"),
    ],
)
def test_a_wrong_reward_row_is_a_config_error_naming_its_index(row: list, message: str) -> None:
    values = forms.field_values(forms.load_preset())
    values["rewards"] = [["accuracy", "", 1.0], row]
    with pytest.raises(ConfigError) as err:
        forms.config_from_values(values)
    assert message in str(err.value)


def test_the_rewards_table_gets_a_row_of_its_own_in_the_grpo_section() -> None:
    fields = forms.section_fields("grpo")
    rows = forms._rows(fields)
    table = [row for row in rows if any(f.name == "rewards" for f in row)]
    assert [[f.name for f in row] for row in table] == [["rewards"]]
    assert sum(len(r) for r in rows) == len(fields) and all(0 < len(r) <= forms.ROW_SIZE for r in rows)
