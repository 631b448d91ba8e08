"""trainer.model.full_weights: the policy's whole weights as vLLM loads them, however they are held.

DDP, ZeRO-3 and FSDP2 sync vLLM engines in tests/vllm/test_vllm_distributed.py; here the parts that
need no vLLM: which sharding an accelerator means, LoRA merged under plain names, and ZeRO-3 shards
gathered exactly whole, also under LoRA (which the end-to-end runs do not cover).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.helpers.ci import import_or_skip
from tests.helpers.launch import cpu_launch_env, two_cpu_processes
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.model.full_weights import full_weights, weight_sharding
from trainer.model.loading import load_policy


def _accelerator(kind: str, **state: object) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=SimpleNamespace(name=kind), state=SimpleNamespace(**state))


def test_weight_sharding_names_who_holds_the_parameters() -> None:
    assert weight_sharding(_accelerator("NO")) == "none"
    assert weight_sharding(_accelerator("MULTI_CPU")) == "none"
    zero = SimpleNamespace(zero_stage=2)
    assert weight_sharding(_accelerator("DEEPSPEED", deepspeed_plugin=zero)) == "none"  # ZeRO-1/2: whole
    zero.zero_stage = 3
    assert weight_sharding(_accelerator("DEEPSPEED", deepspeed_plugin=zero)) == "zero3"
    fsdp = SimpleNamespace(fsdp_version=2)
    assert weight_sharding(_accelerator("FSDP", fsdp_plugin=fsdp)) == "fsdp2"
    fsdp.fsdp_version = 1
    with pytest.raises(ConfigError, match="fsdp_version 1"):
        weight_sharding(_accelerator("FSDP", fsdp_plugin=fsdp))
    with pytest.raises(ValueError, match="sharding must be one of none, zero3, fsdp2, got 'zero2'"):
        with full_weights(torch.nn.Linear(2, 2), "zero2"):
            pass


def test_lora_weights_come_merged_under_plain_names_and_are_unmerged_after() -> None:
    from peft import LoraConfig, get_peft_model

    model, _ = load_policy(TINY_MODEL_DIR)
    plain = {name: t.clone() for name, t in model.state_dict().items()}
    torch.manual_seed(0)
    # init_lora_weights=False: B is random, so merging changes the weights; the merger trained in full.
    config = LoraConfig(
        r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)", modules_to_save=["merger"],
        init_lora_weights=False,
    )  # fmt: skip
    policy = get_peft_model(model, config)
    with torch.no_grad():
        policy.base_model.model.model.visual.merger.modules_to_save["default"].mlp[0].weight.add_(1.0)
    with full_weights(policy, "none") as weights:
        got = {name: t.clone() for name, t in weights}
    assert sorted(got) == sorted(plain)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    layer = policy.base_model.model.model.language_model.layers[0].self_attn.q_proj
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
    torch.testing.assert_close(got[q], plain[q] + delta, rtol=0, atol=1e-6)
    merger = "model.visual.merger.mlp.0.weight"
    torch.testing.assert_close(got[merger], plain[merger] + 1.0)  # the trained copy, not the original
    k = "model.language_model.layers.0.self_attn.k_proj.weight"
    assert torch.equal(got[k], plain[k])
    # After the block the adapters are separate again: the base weight is the original one.
    assert not layer.merged
    torch.testing.assert_close(layer.base_layer.weight, plain[q], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_zero3_shards_are_gathered_whole_plain_and_lora(tmp_path: Path) -> None:
    import_or_skip("deepspeed", "pip install -e .[dev] (deepspeed is in the dev extra)")
    worker = [str(REPO_ROOT / "tests" / "helpers" / "full_weights_zero3_worker.py"), str(tmp_path)]
    proc = subprocess.run(
        two_cpu_processes("zero3", worker), capture_output=True, text=True, timeout=300,
        env=cpu_launch_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (result["world"], result["stage"]) == (2, 3)
        for case in ("plain", "lora"):
            got = result[case]
            assert got["local"] == got["full"] // 2, (rank, case)  # really sharded, half each
            # Exactly the unsharded weights (LoRA: peft's own merge), and again on a second read:
            # the merge was undone in between.
            assert got["diffs"] == [0.0, 0.0], (rank, case)
