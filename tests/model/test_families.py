"""The model seam: a family adapter is chosen from config.json's model_type, never from a folder's
name; an unsupported model_type is a config error at every entry; nothing outside the adapters
names a family."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.model.families import FAMILIES, family_for, family_of_model, family_of_path
from trainer.model.families.qwen2_5_vl import QWEN2_5_VL
from trainer.model.families.qwen2_vl import QWEN2_VL


def _model_folder(tmp_path: Path, name: str, model_type: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def test_the_family_comes_from_model_type_not_the_folder_name(tmp_path: Path) -> None:
    assert family_of_path(TINY_MODEL_DIR) is QWEN2_5_VL
    # A folder named like one family holding another's config is the other family.
    assert family_of_path(_model_folder(tmp_path, "Qwen2.5-VL-7B-Instruct", "qwen2_vl")) is QWEN2_VL
    assert family_of_path(_model_folder(tmp_path, "qwen2-vl", "qwen2_5_vl")) is QWEN2_5_VL


def test_a_lora_folder_has_its_base_models_family(tmp_path: Path) -> None:
    adapter = tmp_path / "checkpoint-4"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(TINY_MODEL_DIR)}))
    assert family_of_path(adapter) is QWEN2_5_VL


def test_an_unsupported_model_type_lists_the_supported_families(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, "llava", "llava_onevision")
    with pytest.raises(ConfigError, match="model_type 'llava_onevision' is not supported") as info:
        family_of_path(folder)
    for family in FAMILIES.values():
        assert f"{family.name} ({family.model_type})" in str(info.value)
    with pytest.raises(ConfigError, match="no config.json"):
        family_of_path(tmp_path)
    with pytest.raises(ConfigError, match="model_type None"):
        family_for(None)


def test_vgrpo_train_check_refuses_an_unsupported_family(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL_DIR, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "llava_next_video"}))
    argv = ["train", "--model_name_or_path", str(model), "--workspace", str(tmp_path / "ws"), "--check"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model_type 'llava_next_video' is not supported" in err and "Qwen2-VL (qwen2_vl)" in err


def test_min_pixels_below_one_visual_token_is_refused_at_check(tmp_path: Path, capsys) -> None:
    argv = ["train", "--min_pixels", "700", "--max_pixels", "3136", "--workspace", str(tmp_path), "--check"]
    assert main(argv) == 2
    assert "min_pixels (700) must be >= 784" in capsys.readouterr().err


def test_sizes_and_module_names_of_the_qwen_families() -> None:
    # 14 px patches merged 2x2: one visual token covers 28 x 28 pixels.
    assert QWEN2_5_VL.pixels_per_token == QWEN2_VL.pixels_per_token == 784
    assert QWEN2_5_VL.lora_target_regex(["q_proj", "v_proj"]) == r".*language_model.*\.(q_proj|v_proj)"
    assert re.fullmatch(
        QWEN2_5_VL.lora_target_regex(["q_proj"]), "model.language_model.layers.0.self_attn.q_proj"
    )
    assert not re.fullmatch(QWEN2_5_VL.lora_target_regex(["q_proj"]), "model.visual.blocks.0.attn.q_proj")
    # Only Qwen2.5-VL's rope index reads the frames' timing.
    assert (
        "second_per_grid_ts" in QWEN2_5_VL.rope_grid_keys
        and "second_per_grid_ts" not in QWEN2_VL.rope_grid_keys
    )


def test_the_loaded_tiny_model_resolves_its_modules_through_the_adapter() -> None:
    from trainer.model.loading import load_policy

    model, _ = load_policy(TINY_MODEL_DIR)
    family = family_of_model(model)
    assert family is QWEN2_5_VL
    assert family.vision_tower_of(model) is model.model.visual
    assert family.merger_modules(model) == [model.model.visual.merger]
    assert family.decoder_layers(model) == list(model.model.language_model.layers)
    assert family.vision_depth(model) == model.config.vision_config.depth


FAMILY_NAMES = re.compile(r"Qwen2_5_VL|Qwen2VL|qwen2_5_vl|qwen2_vl|Qwen3VL|Qwen3_5|qwen3_vl|qwen3_5")


def test_no_family_is_named_outside_its_adapter() -> None:
    families = REPO_ROOT / "trainer" / "model" / "families"
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for root in ("trainer", "studio")
        for path in (REPO_ROOT / root).rglob("*.py")
        if families not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FAMILY_NAMES.search(line)
    ]
    assert offenders == []
