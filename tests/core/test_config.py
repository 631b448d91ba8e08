import dataclasses

import pytest
import yaml

from studio import forms
from trainer.cli import main
from trainer.core.config import SECTIONS, TrainConfig, build_config, field_index, load_yaml, merge
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT


def test_seed_knobs_have_their_names_and_defaults() -> None:
    g = TrainConfig().grpo
    assert (g.grpo_alpha, g.grpo_beta) == (0.5, 0.1)
    assert (g.format_reward_weight, g.accuracy_reward_weight) == (0.3, 0.7)
    assert g.grpo_sample_size == 4
    assert TrainConfig().run.grpo_logging_steps == 50
    assert TrainConfig().optim.learning_rate == 2e-5


def test_every_field_is_documented() -> None:
    undocumented = [
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if not f.metadata.get("help")
    ]
    assert undocumented == []


def test_flat_and_sectioned_values_build_the_same_config() -> None:
    flat = build_config({"grpo_alpha": "0.7", "bf16": "True", "max_steps": "10", "fps": 4})
    nested = build_config(
        {
            "grpo": {"grpo_alpha": 0.7},
            "model": {"bf16": True},
            "optim": {"max_steps": 10},
            "video": {"fps": 4.0},
        }
    )
    assert flat == nested
    assert (flat.grpo.grpo_alpha, flat.model.bf16, flat.optim.max_steps, flat.video.fps) == (
        0.7,
        True,
        10,
        4.0,
    )


def test_yaml_round_trip(tmp_path) -> None:
    cfg = build_config({"grpo_beta": 0.04, "dataset_use": "a,b%50", "total_pixels": None})
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    assert build_config(load_yaml(path)) == cfg
    assert yaml.safe_load(path.read_text())["grpo"]["grpo_beta"] == 0.04


def test_flags_override_yaml() -> None:
    merged = merge({"grpo": {"grpo_beta": 0.2, "grpo_sample_size": 8}}, {"grpo_beta": "0.0"})
    cfg = build_config(merged)
    assert (cfg.grpo.grpo_beta, cfg.grpo.grpo_sample_size) == (0.0, 8)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grpo_alhpa": 1}, "unknown config key 'grpo_alhpa'"),
        ({"grpo": {"bf16": True}}, "unknown config key grpo.bf16"),
        ({"grpo_sample_size": 1}, "grpo_sample_size must be >= 2"),
        ({"scale_rewards": "median"}, "scale_rewards must be group, batch or none"),
        ({"lr_scheduler_type": "polynomial"}, "lr_scheduler_type must be one of constant, constant_with"),
        ({"bf16": "maybe"}, "bf16: not a boolean"),
        ({"max_steps": "ten"}, "max_steps"),
        ({"max_pixels": 100, "min_pixels": 3136}, "max_pixels (100) must be >= min_pixels (3136)"),
    ],
)
def test_bad_values_name_the_field(values, message) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(values)
    assert message in str(info.value)


def test_field_names_are_unique_across_sections() -> None:
    assert len(field_index()) == sum(len(dataclasses.fields(cls)) for cls in SECTIONS.values())


def test_bad_yaml_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("grpo: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


# One case per coercion and cross-field rule: (flat values over the tiny preset, the error's words).
# Each is checked through the three doors a config comes in by: YAML, CLI flags and the studio form.
# Values are written as a user types them (text); YAML reads "2.5" as a float and "abc" as text.
RULES = [
    ({"grpo_sample_size": "2.5"}, "grpo_sample_size: expected an integer"),
    ({"grpo_sample_size": "true"}, "grpo_sample_size: expected an integer"),
    ({"max_steps": "1e1.5"}, "max_steps: expected an integer"),
    ({"format_reward_weight": "abc"}, "format_reward_weight: expected a number"),
    ({"learning_rate": "nan"}, "learning_rate: expected a finite number"),
    ({"bf16": "maybe"}, "bf16: not a boolean"),
    ({"grpo_alpha": "-0.5"}, "grpo_alpha must be > 0"),
    ({"grpo_alpha": "0"}, "grpo_alpha must be > 0"),
    ({"accuracy_reward_weight": "-0.1"}, "format_reward_weight and accuracy_reward_weight must be >= 0"),
    ({"format_reward_weight": "0", "accuracy_reward_weight": "0"}, "accuracy_reward_weight must be > 0"),
    ({"min_pixels": "6272", "max_pixels": "3136"}, "max_pixels (3136) must be >= min_pixels (6272)"),
    ({"total_pixels": "3000"}, "total_pixels (3000) must be >= max_pixels (3136)"),
    ({"total_pixels": "0"}, "total_pixels (0) must be >= max_pixels"),
    ({"max_frames": "7"}, "max_frames must be even"),
    ({"max_frames": "1"}, "max_frames must be >= 2"),
    ({"grpo_sample_size": "1"}, "grpo_sample_size must be >= 2"),
    ({"per_device_train_batch_size": "0"}, "per_device_train_batch_size"),
    ({"attn_implementation": "flash_attention_2"}, "flash_attention_2 needs bf16"),
    ({"lora_dropout": "1.0"}, "lora_dropout must be in [0, 1)"),
    ({"top_k": "-1"}, "top_k must be >= 0"),
    ({"seed": "-3"}, "seed must be >= 0"),
]
PRESET = REPO_ROOT / "configs" / "tiny_cpu.yaml"


@pytest.mark.parametrize(("values", "message"), RULES)
def test_rule_through_yaml(tmp_path, values, message) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({k: yaml.safe_load(v) for k, v in values.items()}))
    with pytest.raises(ConfigError) as info:
        build_config(merge(load_yaml(PRESET), load_yaml(path)))
    assert message in str(info.value)


@pytest.mark.parametrize(("values", "message"), RULES)
def test_rule_through_cli_flags(capsys, values, message) -> None:
    flags = [part for k, v in values.items() for part in (f"--{k}", v)]
    assert main(["train", "--config", str(PRESET), *flags, "--check"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("values", "message"), RULES)
def test_rule_through_the_form(values, message) -> None:
    with pytest.raises(ConfigError) as info:
        forms.config_from_values({**forms.field_values(forms.load_preset()), **values})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("8", 8), (8.0, 8), ("1e3", 1000), (" 12 ", 12)],
)
def test_integers_written_as_floats_stay_integers(raw, expected) -> None:
    value = build_config({"grpo_sample_size": raw}).grpo.grpo_sample_size
    assert value == expected and type(value) is int


def test_an_empty_optional_field_is_none_and_a_required_one_is_an_error() -> None:
    assert build_config({"total_pixels": ""}).video.total_pixels is None
    assert build_config({"total_pixels": None}).video.total_pixels is None
    with pytest.raises(ConfigError, match="grpo_alpha: a value is required"):
        build_config({"grpo_alpha": None})


def test_the_dataclasses_themselves_reject_wrong_types() -> None:
    from trainer.core.config import GRPOConfig
    from trainer.core.video_config import VideoConfig

    with pytest.raises(ConfigError, match="grpo_sample_size must be an integer, got 2.5"):
        GRPOConfig(grpo_sample_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="grpo_alpha must be a number, got True"):
        GRPOConfig(grpo_alpha=True)
    with pytest.raises(ConfigError, match="max_pixels must be an integer"):
        VideoConfig(max_pixels="3136")  # type: ignore[arg-type]


def test_every_wrong_value_of_a_form_is_reported_at_once() -> None:
    values = forms.field_values(forms.load_preset()) | {
        "max_steps": "abc",
        "grpo_beta": "0.1.2",
        "gradient_checkpointing": "maybe",
    }
    with pytest.raises(ConfigError) as caught:
        forms.config_from_values(values)
    message = str(caught.value)
    assert message.startswith("3 values are wrong: ")
    for part in (
        "max_steps: expected an integer, got 'abc'",
        "grpo_beta: expected a number, got '0.1.2'",
        "gradient_checkpointing: not a boolean: 'maybe' (use true or false)",
    ):
        assert part in message
    # A lone typo is said as it is, with nothing under it to unfold.
    with pytest.raises(ConfigError) as one:
        forms.config_from_values(forms.field_values(forms.load_preset()) | {"max_steps": "1e3.5"})
    assert str(one.value) == "max_steps: expected an integer, got '1e3.5'"
    assert one.value.__cause__ is None and one.value.__suppress_context__
