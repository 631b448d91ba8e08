"""Every model family end to end through the seam, on its tiny model: a full fine-tune through
`vgrpo train` whose checkpoint plain transformers loads; LoRA that saves the family's mergers whole,
resumes where it stopped and matches a run made in one go; `vgrpo eval`; `vgrpo export --merge`;
and the side-by-side chat next to the tiny Qwen2.5-VL. Qwen3-VL runs on pixel budgets of its 32 px
tokens (4096 px = 2 x 2 tokens a frame, as 3136 px is on the 28 px families)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio.chat_engine import ChatSettings, ModelCache, chat_conversation, sample_question, stream_answers
from tests.run.test_loop import tiny_config
from trainer.cli import main
from trainer.core.paths import TINY_MODEL_DIR, TINY_QWEN2_VL_DIR, TINY_QWEN3_5_DIR, TINY_QWEN3_VL_DIR
from trainer.data.registry import load_dataset_use
from trainer.model.families import ModelFamily, family_of_model, family_of_path
from trainer.model.families.qwen2_vl import QWEN2_VL
from trainer.model.families.qwen3_5 import QWEN3_5
from trainer.model.families.qwen3_vl import QWEN3_VL
from trainer.model.loading import load_policy
from trainer.run.loop import train
from trainer.rundb import RunStore

pytestmark = pytest.mark.slow

# family -> (tiny model, frame pixels: 2 x 2 visual tokens of the family)
FAMILY_RUNS: dict[str, tuple[Path, ModelFamily, int]] = {
    "qwen2_vl": (TINY_QWEN2_VL_DIR, QWEN2_VL, 3136),
    "qwen3_vl": (TINY_QWEN3_VL_DIR, QWEN3_VL, 4096),
    "qwen3_5": (TINY_QWEN3_5_DIR, QWEN3_5, 4096),
}

# The tiny Qwen3-VL has one DeepStack merger (the real 2B-8B: three).
MODULES_TO_SAVE = {
    "qwen2_vl": ["visual.merger"],
    "qwen3_vl": ["visual.merger", "visual.deepstack_merger_list.0"],
    "qwen3_5": ["visual.merger"],
}


def _config(tmp_path: Path, name: str, **overrides):
    model, _, pixels = FAMILY_RUNS[name]
    return tiny_config(
        tmp_path, model_name_or_path=str(model), min_pixels=pixels, max_pixels=pixels, **overrides
    )


@contextmanager
def _log_lines(logger: str) -> Iterator[list[str]]:
    """The messages ``logger`` emits inside the block (a module fixture has no caplog)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger(logger)
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@pytest.fixture(scope="module", params=sorted(FAMILY_RUNS))
def trained(request, tmp_path_factory) -> dict:
    """Per family: three full fine-tune steps through the CLI; two LoRA steps, then a resume to
    three; and three LoRA steps in one go for comparison."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    full = _config(tmp / "full", name, max_steps=3, save_steps=3)
    (tmp / "full.yaml").write_text(full.to_yaml())
    assert main(["train", "--config", str(tmp / "full.yaml")]) == 0
    lora = dict(lora_enable=True, save_steps=2)
    first = train(_config(tmp / "a", name, max_steps=2, **lora))
    with _log_lines("trainer.run.checkpoint") as resume_log:
        resumed = train(_config(tmp / "a", name, max_steps=3, resume_from_checkpoint="latest", **lora))
    straight = train(_config(tmp / "b", name, max_steps=3, **lora))
    return {
        "name": name,
        "tmp": tmp,
        "full": tmp / "full" / "out" / "checkpoint-3",
        "first": first,
        "resumed": resumed,
        "resume_log": resume_log,
        "straight": straight,
    }


def test_a_full_fine_tune_through_the_cli_loads_with_plain_transformers(trained) -> None:
    from transformers import AutoModelForImageTextToText

    _, family, _ = FAMILY_RUNS[trained["name"]]
    model = AutoModelForImageTextToText.from_pretrained(trained["full"])
    assert type(model).__name__ == family.model_class
    assert family_of_model(model) is family and family_of_path(trained["full"]) is family
    # Every merger (Qwen3-VL: the DeepStack ones too) came back with the checkpoint's weights
    # (saved under the family's own key layout: Qwen2-VL's has no "model." in front).
    saved = load_file(trained["full"] / "model.safetensors")
    for path in family.mergers:
        for key, value in family.core(model).get_submodule(path).state_dict().items():
            [stored] = [k for k in saved if k.endswith(f"{path}.{key}")]
            assert torch.equal(saved[stored], value), stored


def test_lora_checkpoints_save_the_mergers_and_resume_exactly(trained) -> None:
    first, resumed, straight = trained["first"], trained["resumed"], trained["straight"]
    _, family, _ = FAMILY_RUNS[trained["name"]]
    assert first.final_checkpoint.name == "checkpoint-2" and resumed.final_checkpoint.name == "checkpoint-3"
    assert resumed.run_id == first.run_id and resumed.steps == 3
    assert f"resumed from {first.final_checkpoint} at step 2" in trained["resume_log"]
    adapter = json.loads((resumed.final_checkpoint / "adapter_config.json").read_text())
    # tune_mm_mlp (on by default) trains the family's mergers through peft's modules_to_save;
    # peft wraps no module list, so Qwen3-VL's DeepStack mergers are listed one by one.
    assert adapter["modules_to_save"] == MODULES_TO_SAVE[trained["name"]]
    # The default target list means the family's own: Qwen3.5's linear-attention projections too.
    assert all(t in adapter["target_modules"] for t in family.lora_targets)
    # Two steps, a resume, one more == three in one go: the data order, RNG and optimiser came back.
    after_resume = load_file(resumed.final_checkpoint / "adapter_model.safetensors")
    in_one_go = load_file(straight.final_checkpoint / "adapter_model.safetensors")
    assert after_resume.keys() == in_one_go.keys()
    for path in family.mergers:
        assert any(f".{path}." in k for k in after_resume), path
    assert all(torch.equal(after_resume[k], in_one_go[k]) for k in after_resume)
    store = RunStore(f"sqlite:///{trained['tmp'] / 'a' / 'ws' / 'runs.db'}")
    assert [c.step for c in store.checkpoints(first.run_id)] == [2, 3]


def test_eval_export_and_chat_of_each_family(trained, tmp_path) -> None:
    _, family, _ = FAMILY_RUNS[trained["name"]]
    checkpoint = trained["resumed"].final_checkpoint
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset_use", "synthetic_motion_eval",
            "--max_records", "4", "--db", db, "--workspace", str(tmp_path),
            "--json", str(tmp_path / "e.json")]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["num_records"] == 4 and 0.0 <= doc["accuracy"] <= 1.0

    merged = tmp_path / "merged"
    assert main(["export", "--merge", str(checkpoint), "-o", str(merged)]) == 0
    model, _ = load_policy(merged)
    assert family_of_model(model) is family and type(model).__name__ == family.model_class

    record = load_dataset_use("synthetic_motion_eval", tmp_path, seed=0, check_videos=False)[0]
    settings = ChatSettings(max_new_tokens=16, greedy=True, fps=2.0, max_frames=8)
    messages = chat_conversation(record.video, sample_question(record), record.mode, settings.video_config())
    cache = ModelCache(capacity=3, device="cpu")
    # The LoRA checkpoint (merged by load_policy) and its exported folder answer alike, next to
    # the tiny Qwen2.5-VL, on one question.
    paths = [str(TINY_MODEL_DIR), str(checkpoint), str(merged)]
    final = list(stream_answers(cache, paths, messages, settings))[-1]
    assert [s.status for s in final] == ["done", "done", "done"], [s.error for s in final]
    assert final[1].text and final[1].text == final[2].text
