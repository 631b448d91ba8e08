import dataclasses

import pytest
import yaml

from trainer.config import SECTIONS, TrainConfig, build_config, field_index, load_yaml, merge
from trainer.errors import ConfigError


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
