"""The second model family end to end through the seam: the tiny Qwen2-VL trains with LoRA, saves,
resumes where it stopped, evaluates into the run database, exports merged, and answers in the
side-by-side chat next to the tiny Qwen2.5-VL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio.chat_engine import ChatSettings, ModelCache, chat_conversation, sample_question, stream_answers
from tests.run.test_loop import tiny_config
from trainer.cli import main
from trainer.core.paths import TINY_MODEL_DIR, TINY_QWEN2_VL_DIR
from trainer.data.registry import load_dataset_use
from trainer.model.families import family_of_model, family_of_path
from trainer.model.families.qwen2_vl import QWEN2_VL
from trainer.model.loading import load_policy
from trainer.run.loop import train
from trainer.rundb import RunStore

pytestmark = pytest.mark.slow


def _qwen2_vl_config(tmp_path: Path, **overrides):
    return tiny_config(
        tmp_path, model_name_or_path=str(TINY_QWEN2_VL_DIR), lora_enable=True, save_steps=2, **overrides
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Two LoRA steps, then a resume to four; and four steps in one go for comparison."""
    tmp = tmp_path_factory.mktemp("qwen2vl")
    first = train(_qwen2_vl_config(tmp / "a", max_steps=2))
    resumed = train(_qwen2_vl_config(tmp / "a", max_steps=4, resume_from_checkpoint="latest"))
    straight = train(_qwen2_vl_config(tmp / "b", max_steps=4))
    return {"tmp": tmp, "first": first, "resumed": resumed, "straight": straight}


def test_lora_checkpoints_of_the_second_family_resume_exactly(trained, caplog) -> None:
    first, resumed, straight = trained["first"], trained["resumed"], trained["straight"]
    assert family_of_path(TINY_QWEN2_VL_DIR) is QWEN2_VL
    assert first.final_checkpoint.name == "checkpoint-2" and resumed.final_checkpoint.name == "checkpoint-4"
    assert resumed.run_id == first.run_id
    adapter = json.loads((resumed.final_checkpoint / "adapter_config.json").read_text())
    # tune_mm_mlp (on by default) trains the family's merger through peft's modules_to_save.
    assert adapter["modules_to_save"] == list(QWEN2_VL.mergers)
    # Two steps, a resume, two more == four in one go: the data order, RNG and optimiser came back.
    after_resume = load_file(resumed.final_checkpoint / "adapter_model.safetensors")
    in_one_go = load_file(straight.final_checkpoint / "adapter_model.safetensors")
    assert after_resume.keys() == in_one_go.keys() and any("merger" in k for k in after_resume)
    assert all(torch.equal(after_resume[k], in_one_go[k]) for k in after_resume)
    store = RunStore(f"sqlite:///{trained['tmp'] / 'a' / 'ws' / 'runs.db'}")
    assert [c.step for c in store.checkpoints(first.run_id)] == [2, 4]


def test_the_resumed_run_started_from_its_checkpoint(tmp_path, caplog) -> None:
    train(_qwen2_vl_config(tmp_path, max_steps=2))
    with caplog.at_level(logging.INFO, logger="trainer.run.checkpoint"):
        outcome = train(_qwen2_vl_config(tmp_path, max_steps=3, resume_from_checkpoint="latest"))
    assert f"resumed from {tmp_path / 'out' / 'checkpoint-2'} at step 2" in caplog.text
    assert outcome.steps == 3


def test_eval_export_and_chat_of_the_second_family(trained, tmp_path, capsys) -> None:
    checkpoint = trained["resumed"].final_checkpoint
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset_use", "synthetic_motion_eval"]
    argv += [
        "--max_records",
        "4",
        "--db",
        db,
        "--workspace",
        str(tmp_path),
        "--json",
        str(tmp_path / "e.json"),
    ]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["num_records"] == 4 and 0.0 <= doc["accuracy"] <= 1.0

    merged = tmp_path / "merged"
    assert main(["export", "--merge", str(checkpoint), "-o", str(merged)]) == 0
    model, _ = load_policy(merged)
    assert family_of_model(model) is QWEN2_VL and type(model).__name__ == QWEN2_VL.model_class

    record = load_dataset_use("synthetic_motion_eval", tmp_path, seed=0, check_videos=False)[0]
    settings = ChatSettings(max_new_tokens=16, greedy=True, fps=2.0, max_frames=8)
    messages = chat_conversation(record.video, sample_question(record), record.mode, settings.video_config())
    cache = ModelCache(capacity=3, device="cpu")
    # The LoRA checkpoint (merged by load_policy) and its exported folder answer alike, next to
    # the other family.
    paths = [str(TINY_MODEL_DIR), str(checkpoint), str(merged)]
    final = list(stream_answers(cache, paths, messages, settings))[-1]
    assert [s.status for s in final] == ["done", "done", "done"], [s.error for s in final]
    assert final[1].text and final[1].text == final[2].text
