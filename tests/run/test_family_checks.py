"""A model the run cannot use is a config error at Check (``vgrpo train --check``, the studio's
Check config), naming what is wrong and what to do, read from config and processor files alone:
a ``model_type`` no family adapter knows, a processor of another family than the weights, and
min_pixels below one visual token of the family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.cli.train import EXIT_WARNINGS
from trainer.core.errors import ConfigError
from trainer.core.paths import TINY_MODEL_DIR, TINY_QWEN2_VL_DIR, TINY_QWEN3_5_DIR, TINY_QWEN3_VL_DIR
from trainer.core.video_config import VideoConfig
from trainer.model.families import FAMILIES
from trainer.model.families.qwen3_vl import QWEN3_VL
from trainer.model.loading import load_policy
from trainer.model.processor_files import check_processor_files
from trainer.run.preflight import check_model_family

QWEN3_PIXELS = VideoConfig(min_pixels=4096, max_pixels=4096)


def _check(tmp_path: Path, model: Path, *flags: str) -> list[str]:
    argv = ["train", "--model_name_or_path", str(model), "--workspace", str(tmp_path / "ws"), *flags]
    return [*argv, "--check"]


def _folder(tmp_path: Path, weights_of: Path, processor_of: Path | None = None) -> Path:
    """A model folder with ``weights_of``'s config.json (no weights: Check never reads them) and
    the processor and tokenizer files of ``processor_of`` (default: the same model)."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(weights_of / "config.json", folder)
    for path in (processor_of or weights_of).iterdir():
        if path.name not in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(path, folder)
    return folder


def test_an_unsupported_model_type_is_refused_naming_every_supported_family(tmp_path, capsys) -> None:
    folder = _folder(tmp_path, TINY_QWEN3_VL_DIR)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "llava_onevision"}))
    assert main(_check(tmp_path, folder)) == 2
    err = capsys.readouterr().err
    assert "model_type 'llava_onevision' is not supported; supported families:" in err
    for family in FAMILIES.values():
        assert f"{family.name} ({family.model_type})" in err


def test_qwen3_vl_weights_with_a_qwen2_5_vl_processor_are_refused_at_check(tmp_path, capsys) -> None:
    folder = _folder(tmp_path, TINY_QWEN3_VL_DIR, processor_of=TINY_MODEL_DIR)
    assert main(_check(tmp_path, folder, "--min_pixels", "4096", "--max_pixels", "4096")) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'processor_config.json'}: image_processor.patch_size is 14" in err
    assert "vision tower (Qwen3-VL, config.json) uses 16" in err
    assert "copy the processor files" in err and "of the Qwen3-VL checkpoint" in err
    # The loaders refuse it the same way, before any weight is read (the folder has none).
    with pytest.raises(ConfigError, match="patch_size is 14"):
        load_policy(folder)


def _rewrite(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_processor_class_of_another_family_is_refused(tmp_path) -> None:
    # Patch sizes right (Qwen3-VL's own files), the class Qwen2.5-VL's: AutoProcessor would build
    # a Qwen2.5-VL processor (no frame timestamps) for a Qwen3-VL model.
    folder = _folder(tmp_path, TINY_QWEN3_VL_DIR)
    _rewrite(folder / "processor_config.json", processor_class="Qwen2_5_VLProcessor")
    with pytest.raises(ConfigError) as info:
        check_model_family(str(folder), QWEN3_PIXELS)
    assert str(info.value) == (
        f"{folder / 'processor_config.json'}: processor_class Qwen2_5_VLProcessor is the processor of "
        "Qwen2.5-VL, but config.json is Qwen3-VL (qwen3_vl, processor Qwen3VLProcessor); copy the "
        "processor files (processor_config.json / preprocessor_config.json / "
        "video_preprocessor_config.json) of the Qwen3-VL checkpoint these weights come from"
    )


def test_a_hub_style_preprocessor_config_of_another_family_is_refused(tmp_path) -> None:
    # Hub checkpoints of Qwen2.5-VL keep their sizes flat in preprocessor_config.json.
    folder = _folder(tmp_path, TINY_QWEN3_VL_DIR)
    flat = {
        "patch_size": 14,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "processor_class": "Qwen3VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(flat))
    with pytest.raises(
        ConfigError, match=r"preprocessor_config.json: patch_size is 14 .*Qwen2.5-VL, Qwen2-VL"
    ):
        check_model_family(str(folder), QWEN3_PIXELS)


@pytest.mark.parametrize(
    "model", [TINY_MODEL_DIR, TINY_QWEN2_VL_DIR, TINY_QWEN3_VL_DIR, TINY_QWEN3_5_DIR], ids=lambda p: p.name
)
def test_the_shipped_tiny_models_match_their_processors(model: Path) -> None:
    family = check_model_family(str(model), QWEN3_PIXELS)
    assert family is not None
    check_processor_files(model, family)


def test_min_pixels_below_one_qwen3_vl_token_is_refused_at_check(tmp_path, capsys) -> None:
    # 1000 px is over one token of the 28 px families (784) but under one of Qwen3-VL (32 x 32).
    assert check_model_family(str(TINY_MODEL_DIR), VideoConfig(min_pixels=1000, max_pixels=4096))
    flags = ("--min_pixels", "1000", "--max_pixels", "4096")
    assert main(_check(tmp_path, TINY_QWEN3_VL_DIR, *flags)) == 2
    err = capsys.readouterr().err
    assert (
        "min_pixels (1000) must be >= 1024: one visual token of Qwen3-VL covers 32 x 32 = 1024 pixels; "
        "raise min_pixels (and max_pixels) to at least 1024"
    ) in err
    assert QWEN3_VL.pixels_per_token == 1024


def test_a_qwen3_5_lora_without_the_linear_attention_targets_is_refused_at_check(tmp_path, capsys) -> None:
    flags = ("--min_pixels", "4096", "--max_pixels", "4096", "--lora_enable", "true")
    assert main(_check(tmp_path, TINY_QWEN3_5_DIR, *flags, "--lora_target_modules", "q_proj,v_proj")) == 2
    err = capsys.readouterr().err
    assert "lora_target_modules leaves out in_proj_qkv, in_proj_z, in_proj_a, in_proj_b, out_proj" in err
    assert "Qwen3.5's linear-attention layers would not train" in err


def test_the_pre_flight_names_the_linear_attention_implementation_and_too_few_tokens(
    tmp_path, capsys
) -> None:
    """Check on the tiny Qwen3.5 with the shipped preset's 3136 px (one 32 px token per frame):
    the report says which linear-attention implementation runs, and warns about max_pixels."""
    flags = ("--max_steps", "1", "--grpo_sample_size", "2", "--generation_max_length", "16")
    flags += ("--min_pixels", "3136", "--max_pixels", "3136")
    code = main(_check(tmp_path, TINY_QWEN3_5_DIR, *flags))
    out = capsys.readouterr().out
    assert "linear attention: transformers' PyTorch fallback (no GPU; correct, slower)" in out
    assert "max_pixels 3136 gives each frame fewer than 4 visual tokens of Qwen3.5 (32 x 32 px each)" in out
    assert code == EXIT_WARNINGS  # valid, but the pre-flight warns
