"""The Train tab's models: embedded ones discovered with their family, families told without loading,
and the form's pixel budgets following the family's visual token size."""

from __future__ import annotations

import doctest
import html
import json
from pathlib import Path

import pytest
from studio_helpers import fake_supervisor

from studio import forms, models
from studio.tabs.train import TrainHandlers
from trainer.core.paths import TINY_MODEL_DIR, TINY_QWEN2_VL_DIR, TINY_QWEN3_VL_DIR
from trainer.model.families import FAMILIES

QWEN2_5, QWEN2, QWEN3 = FAMILIES["qwen2_5_vl"], FAMILIES["qwen2_vl"], FAMILIES["qwen3_vl"]
PRESET_PIXELS = {"min_pixels": "3136", "max_pixels": "3136", "total_pixels": ""}


def test_doctests_pass() -> None:
    result = doctest.testmod(models)
    assert result.attempted >= 2 and result.failed == 0


def _model_folder(root: Path, name: str, config: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(config)
    return folder


def test_embedded_models_are_discovered_and_unsupported_ones_left_out(tmp_path: Path) -> None:
    qwen3 = _model_folder(tmp_path, "b-qwen3", json.dumps({"model_type": "qwen3_vl"}))
    qwen2 = _model_folder(tmp_path, "a-qwen2", json.dumps({"model_type": "qwen2_vl"}))
    _model_folder(tmp_path, "llava", json.dumps({"model_type": "llava_onevision"}))
    _model_folder(tmp_path, "broken", "{not json")
    (tmp_path / "synthetic_motion").mkdir()  # a dataset: no config.json
    assert models.embedded_models(tmp_path) == [(str(qwen2), QWEN2), (str(qwen3), QWEN3)]
    # The shipped assets: the default tiny model first, every family labelled, then the hub ids.
    choices = models.model_choices(str(TINY_MODEL_DIR))
    labels = dict((value, label) for label, value in choices)
    assert choices[0] == ("assets/tiny-qwen2.5-vl — Qwen2.5-VL", str(TINY_MODEL_DIR))
    assert labels[str(TINY_QWEN3_VL_DIR)] == "assets/tiny-qwen3-vl — Qwen3-VL"
    assert labels[str(TINY_QWEN2_VL_DIR)] == "assets/tiny-qwen2-vl — Qwen2-VL"
    assert [v for _, v in choices][-len(models.HUB_MODELS) :] == list(models.HUB_MODELS)
    # A typed folder the form holds comes right after the embedded models, labelled as typed.
    typed = models.model_choices("/models/typed")
    assert typed[len(models.embedded_models())] == ("/models/typed", "/models/typed")


def test_family_of_reads_folders_and_hub_ids_without_the_network() -> None:
    assert models.family_of(str(TINY_QWEN3_VL_DIR)) is QWEN3
    assert models.family_of("assets/tiny-qwen2-vl") is QWEN2  # as the presets spell it
    assert models.family_of(QWEN3.hub_models[0]) is QWEN3  # a listed checkpoint, cached or not
    assert models.family_of("nobody/not-a-cached-model") is None
    assert models.family_of("/no/such/folder") is None
    assert models.family_of("") is None


def test_rescale_between_token_sizes_by_hand() -> None:
    up = models.rescale_pixels({**PRESET_PIXELS, "total_pixels": "6272"}, QWEN2_5, QWEN3)
    # 3136 px = 2 x 2 tokens of 28 px -> 2 x 2 tokens of 32 px = 4096 px; 6272 = 8 tokens -> 8192.
    assert up.values == {"min_pixels": "4096", "max_pixels": "4096", "total_pixels": "8192"}
    assert up.message == (
        "Pixel budgets rescaled for Qwen3-VL's 32 px visual tokens, so each frame keeps its token count: "
        "min_pixels 3136 -> 4096, max_pixels 3136 -> 4096, total_pixels 6272 -> 8192."
    )
    down = models.rescale_pixels(
        {"min_pixels": "4096", "max_pixels": "8192", "total_pixels": ""}, QWEN3, QWEN2
    )
    assert down.values == {"min_pixels": "3136", "max_pixels": "6272"}
    assert models.rescale_pixels(PRESET_PIXELS, QWEN2_5, QWEN2) is None  # same 28 px token
    assert models.rescale_pixels({**PRESET_PIXELS, "min_pixels": "lots"}, QWEN2_5, QWEN3) is None


@pytest.fixture
def handlers(ctx) -> TrainHandlers:
    return TrainHandlers(ctx, fake_supervisor(ctx))


def test_picking_a_model_rescales_the_form_and_remembers_its_family(handlers: TrainHandlers) -> None:
    import gradio as gr

    pixels = PRESET_PIXELS.values()
    status, *fields, sized = handlers.choose_model(str(TINY_QWEN3_VL_DIR), "qwen2_5_vl", *pixels)
    assert "Qwen3-VL's 32 px visual tokens" in status and "3136 -> 4096" in status
    assert fields[:2] == ["4096", "4096"] and sized == "qwen3_vl"
    status, *fields, sized = handlers.choose_model(str(TINY_QWEN2_VL_DIR), sized, "4096", "4096", "")
    assert fields[:2] == ["3136", "3136"] and sized == "qwen2_vl"
    # Same token size: nothing to change; an unknown hub id leaves the fields and what they fit.
    _, *fields, sized = handlers.choose_model(str(TINY_MODEL_DIR), "qwen2_vl", *pixels)
    assert fields == [gr.skip()] * 3 and sized == "qwen2_5_vl"
    _, *fields, sized = handlers.choose_model("nobody/not-a-cached-model", "qwen3_vl", *pixels)
    assert fields == [gr.skip()] * 3 and sized == "qwen3_vl"
    # Reset brings the preset's budgets with the preset's model.
    assert handlers.reset("no_think")[-1] == "qwen2_5_vl"


def test_check_refuses_a_min_pixels_below_one_qwen3_vl_token(handlers: TrainHandlers) -> None:
    preset = forms.field_values(forms.preset_for_mode("no_think"))
    values = {**preset, "model_name_or_path": str(TINY_QWEN3_VL_DIR), "min_pixels": "784"}
    status = html.unescape(handlers.check(*[values[n] for n in handlers.names])[0])
    assert "min_pixels (784) must be >= 1024: one visual token of Qwen3-VL covers" in status
