"""LoRA with the default settings (tune_mm_mlp on): the merger trains through peft's
modules_to_save, so the checkpoint keeps it, the reference (adapters disabled) is exactly the
initial model, the checkpoint loads back with peft, resumes, and exports as plain HF weights."""

from __future__ import annotations

import json

import pytest
import torch

from tests.run.test_loop import tiny_config
from trainer.cli import main as vgrpo
from trainer.core import metrics_keys as mk
from trainer.core.config import ModelConfig
from trainer.core.paths import TINY_MODEL_DIR
from trainer.core.video_config import VideoConfig
from trainer.data import load_dataset_use
from trainer.model.families.qwen2_5_vl import QWEN2_5_VL
from trainer.model.loading import generation_kwargs, load_policy
from trainer.model.trainable import lora_modules_to_save
from trainer.rollout.hf import build_prompt_batch, generate_rollouts
from trainer.run.loop import train
from trainer.update.logprobs import completion_logprobs

MERGER = "model.visual.merger."
# The no-think split gives the tiny model rewards that differ within a group, and the entropy term a
# gradient even when they do not, so both steps move the adapters.
LORA = {
    "lora_enable": True,
    "lora_r": 4,
    "lora_dropout": 0.0,
    "dataset_use": "synthetic_motion_no_think_train%5",
    "grpo_sample_size": 4,
    "entropy_coeff": 0.001,
    "lr_scheduler_type": "constant",
    "max_steps": 2,
}


@pytest.mark.parametrize(
    ("vision", "mlp", "expected"),
    [
        (False, True, ["visual.merger"]),
        (True, True, ["visual"]),
        (True, False, ["visual.patch_embed", "visual.blocks.0", "visual.blocks.1"]),
        (False, False, []),
    ],
)
def test_lora_trains_the_asked_non_lora_parts_through_modules_to_save(vision, mlp, expected) -> None:
    cfg = ModelConfig(lora_enable=True, tune_mm_vision=vision, tune_mm_mlp=mlp)
    assert lora_modules_to_save(cfg, QWEN2_5_VL, vision_depth=2) == expected


def _merger(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_lora_defaults_keep_the_trained_merger_and_reference(tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    cfg = tiny_config(tmp_path, **LORA)
    assert cfg.model.tune_mm_mlp  # the default this test is about
    outcome = train(cfg)
    # Step 1 samples from the initial policy: LoRA's B matrices start at zero and the merger's trained
    # copy equals the original, so the policy is the reference and the k3 KL is exactly 0.
    assert outcome.history[0][mk.KL_DIV] == pytest.approx(0.0, abs=1e-7)
    policy = outcome.model.eval()
    initial, processor = load_policy(TINY_MODEL_DIR)

    # What trains: the adapters and peft's trained copy of the merger, nothing else.
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert all("lora_" in n or ".merger.modules_to_save.default." in n for n in trainable), trainable
    assert any(".merger.modules_to_save." in n for n in trainable)
    lora_b = [p.detach() for n, p in policy.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)  # B starts at 0: it learned

    merged = PeftModel.from_pretrained(
        Qwen2_5_VLForConditionalGeneration.from_pretrained(TINY_MODEL_DIR), outcome.final_checkpoint
    )
    # The checkpoint is adapters + merger only, and loads back equal to the trained policy.
    ckpt = outcome.final_checkpoint
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "model.safetensors").exists()
    assert json.loads((ckpt / "adapter_config.json").read_text())["modules_to_save"] == ["visual.merger"]
    trained_state = policy.state_dict()
    reloaded_state = merged.state_dict()
    assert sorted(trained_state) == sorted(reloaded_state)
    for name, value in trained_state.items():
        assert torch.equal(value, reloaded_state[name]), name

    # The merger changed, and the original copy (the reference's) did not.
    base_merger = _merger(initial.state_dict(), MERGER)
    trained_merger = {
        k.replace("modules_to_save.default.", ""): v
        for k, v in _merger(trained_state, "base_model.model." + MERGER).items()
        if "modules_to_save.default." in k
    }
    original_merger = {
        k.replace("original_module.", ""): v
        for k, v in _merger(trained_state, "base_model.model." + MERGER).items()
        if "original_module." in k
    }
    assert sorted(trained_merger) == sorted(base_merger) == sorted(original_merger)
    assert any(not torch.equal(trained_merger[k], base_merger[k]) for k in base_merger)
    assert all(torch.equal(original_merger[k], base_merger[k]) for k in base_merger)

    # Reference log-probs (adapters and trained copies disabled) are the initial model's.
    records = load_dataset_use("synthetic_motion_eval", tmp_path / "ws", 0)[:2]
    video = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)
    torch.manual_seed(0)
    rollout = generate_rollouts(
        initial, processor, build_prompt_batch(processor, records, video), 2, generation_kwargs(processor, 8)
    )
    with torch.no_grad(), policy.disable_adapter():
        ref = completion_logprobs(policy, rollout)
    with torch.no_grad():
        expected = completion_logprobs(initial, rollout)
        trained = completion_logprobs(policy, rollout)
    assert torch.allclose(ref, expected, atol=1e-6, rtol=0)
    assert float((trained - expected).abs().max()) > 1e-5  # while the trained policy moved

    # `vgrpo export --merge` writes full weights that plain transformers loads.
    out = tmp_path / "merged"
    assert vgrpo(["export", "--merge", str(ckpt), "-o", str(out)]) == 0
    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    folded = merged.merge_and_unload().state_dict()
    plain_state = plain.state_dict()
    assert sorted(plain_state) == sorted(folded)
    for name, value in folded.items():
        assert torch.equal(value, plain_state[name]), name
    assert torch.equal(_merger(plain_state, MERGER)["mlp.0.weight"], trained_merger["mlp.0.weight"])

    # `vgrpo eval` loads the LoRA checkpoint itself (adapters merged onto the base).
    report = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(ckpt), "--dataset_use", "synthetic_motion_no_think_eval"]
    argv += ["--max_records", "2", "--workspace", str(tmp_path / "ws"), "--json", str(report)]
    assert vgrpo(argv) == 0
    assert json.loads(report.read_text())["num_records"] == 2


@pytest.mark.slow
def test_lora_resume_continues_from_the_saved_adapters_and_merger(tmp_path) -> None:
    full = train(tiny_config(tmp_path / "a", save_steps=10, **LORA))
    train(tiny_config(tmp_path / "b", save_steps=1, **{**LORA, "max_steps": 1}))
    resumed = train(tiny_config(tmp_path / "b", save_steps=10, resume_from_checkpoint="latest", **LORA))
    assert [h["step"] for h in resumed.history] == [2]
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    for name, value in expected.items():
        assert torch.allclose(value, got[name], rtol=1e-5, atol=1e-7), name
