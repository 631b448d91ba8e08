"""Memory estimates of real checkpoints without their weights: the published architectures
(trainer/model/families/published.py) built on the meta device count as the hub says, the GPU presets pass the
config checks that run offline and fit the 80 GB GPU they are written for, and a pre-flight whose
hub model is not here says what the run would need."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from trainer.core.config import build_config, load_yaml
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT
from trainer.model.families import FAMILIES
from trainer.model.families.published import PUBLISHED, empty_model, parameter_count, published
from trainer.run.preflight import check_launch, run_preflight
from trainer.run.preflight_cost import published_step_cost
from trainer.step.cost import prompt_tokens_at_most, video_tokens_at_most

GPU_PRESETS = {
    "configs/qwen2_5_vl_3b_gpu.yaml": 784,  # pixels per visual token: 28 x 28
    "configs/qwen3_vl_4b_gpu.yaml": 1024,  # 32 x 32
    "configs/qwen3_5_4b_gpu.yaml": 1024,
}
GPU_MEMORY_GIB = 80 * 1e9 / 2**30  # an "80 GB" H100 / A100


def test_video_and_prompt_token_bounds_match_a_hand_count() -> None:
    # 16 frames -> 8 temporal patches; 131072 px / (32 x 32) = 128 tokens each.
    assert video_tokens_at_most(16, 131072, 1024) == 1024
    # 15 frames make 7 whole temporal patches; 100000 px hold 127 whole 28 x 28 cells.
    assert video_tokens_at_most(15, 100000, 784) == 7 * 127
    assert prompt_tokens_at_most(1024) == 1024 + 160


@pytest.mark.parametrize("hub_id", [h for h, p in PUBLISHED.items() if p.published_parameters])
def test_parameter_counts_match_the_published_sizes(hub_id: str) -> None:
    count = parameter_count(empty_model(hub_id))
    assert count == pytest.approx(published(hub_id).published_parameters, rel=0.01)


def test_unchecked_architectures_are_near_their_names() -> None:
    """Qwen3.5's entries are not all checked against the published files (see their notes): their
    counts must at least be near the size in the name (which rounds, and leaves out the vision
    tower or the multi-token-prediction layer depending on the source)."""
    named = {
        "Qwen/Qwen3.5-0.8B": 0.8e9,
        "Qwen/Qwen3.5-2B": 2e9,
        "Qwen/Qwen3.5-4B": 4e9,
        "Qwen/Qwen3.5-9B": 9e9,
    }
    for hub_id, size in named.items():
        assert parameter_count(empty_model(hub_id)) == pytest.approx(size, rel=0.15), hub_id
    assert {h for h, p in PUBLISHED.items() if not p.verified} <= set(named)


def test_building_on_the_meta_device_is_fast_and_allocates_nothing() -> None:
    empty_model("Qwen/Qwen2-VL-2B-Instruct")  # transformers imports its modeling modules once
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    models = [empty_model(hub_id) for hub_id in PUBLISHED]
    seconds = time.perf_counter() - start
    grown_gib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 2**20
    # 11 models of 55B parameters together: 204 GiB in float32 were they real.
    assert sum(parameter_count(m) for m in models) == pytest.approx(54.9e9, rel=0.01)
    assert {p.device.type for m in models for p in m.parameters()} == {"meta"}
    assert grown_gib < 0.5, f"building grew the process by {grown_gib:.2f} GiB"
    assert seconds < 30, f"{seconds:.1f}s for {len(models)} models (about 0.1 s each on 2 idle cores)"


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_gpu_presets_pass_the_offline_checks_and_fit_an_80_gb_gpu(preset: str, tmp_path) -> None:
    cfg = build_config({**load_yaml(REPO_ROOT / preset), "workspace": str(tmp_path)})
    hub_id = cfg.model.model_name_or_path
    launch = check_launch(cfg)  # datasets, modes, model path: what runs without the weights
    assert launch.model_path == hub_id and launch.train_modes == ("think",)
    entry = published(hub_id)
    cell = (entry.vision["patch_size"] * 2) ** 2  # 2 x 2 patches merged into one visual token
    assert cell == GPU_PRESETS[preset]
    if entry.model_type in FAMILIES:
        assert FAMILIES[entry.model_type].pixels_per_token == cell
    # 16 and 128 visual tokens per frame pair, whatever the family's cell.
    assert (cfg.video.min_pixels, cfg.video.max_pixels) == (16 * cell, 128 * cell)
    if entry.model_type not in FAMILIES:
        pytest.skip(f"family {entry.model_type} not in FAMILIES yet: set_trainable cannot count it")
    cost = published_step_cost(cfg, hub_id)
    assert cost.video_tokens == 8 * 128 and cost.sequences_per_step == 32
    assert cost.trainable_parameters < cost.parameters  # the vision tower stays frozen
    assert cost.memory.total_gib < GPU_MEMORY_GIB


def test_a_preflight_without_the_weights_says_what_the_run_needs(monkeypatch, tmp_path) -> None:
    import trainer.model.loading as loading

    def offline(path: str, **_: object) -> None:
        raise ConfigError(f"model_name_or_path: cannot read the config of {path} (no network)")

    monkeypatch.setattr(loading, "load_policy", offline)
    cfg = build_config({**load_yaml(REPO_ROOT / "configs/qwen3_vl_4b_gpu.yaml"), "workspace": str(tmp_path)})
    with pytest.raises(ConfigError) as caught:
        run_preflight(cfg)
    message = str(caught.value)
    assert message.startswith("model_name_or_path: cannot read the config of Qwen/Qwen3-VL-4B-Instruct")
    assert "from its published architecture: 4.44B parameters (4.13B trainable)" in message
    assert "prompts of at most 1184 tokens (1024 video)" in message
    expected = published_step_cost(cfg, "Qwen/Qwen3-VL-4B-Instruct").memory.total_gib
    assert f"memory estimate on {'GPU' if 'GPU' in message else 'CPU'}: {expected:.2f} GiB" in message


@pytest.mark.slow
def test_vgrpo_check_of_an_uncached_hub_model_prints_the_estimate(tmp_path) -> None:
    """The user's path: `vgrpo train --config <GPU preset> --check` on a machine without the
    weights and without the network ends in one line with the estimate, exit 2 (a config error)."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "VGRPO_WORKSPACE": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "train", "--config", "configs/qwen3_vl_4b_gpu.yaml", "--check"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert (
        "vgrpo: config error: model_name_or_path: Qwen/Qwen3-VL-4B-Instruct could not be downloaded: "
        "HF_HUB_OFFLINE is set and the local cache lacks it" in out.stderr
    )
    assert "from its published architecture: 4.44B parameters" in out.stderr
