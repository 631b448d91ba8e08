"""One model's GPU check: GRPO steps of a random-weight model shaped like a real checkpoint.

``bench/gpu_check.sh`` runs this once per model. The model has the architecture of the published
checkpoint (``trainer.model.families.published``: no download, random bf16 weights) and the
matching embedded tiny model's tokenizer and processor (so its special-token ids are the tiny
vocabulary's, inside the real vocabulary). Each arm is a whole training run through the trainer's
own entry point, ``trainer.run.loop.train``: ``--steps`` steps of one 16-frame video question, G
completions, with the hf and vllm rollout backends and ``shared_prefix`` off and on. One line per arm:

    gpu: model=Qwen3-VL-4B backend=hf shared_prefix=on step_s=2.104 peak_gib=48.1 tokens_per_s=243

``step_s``: median step time after the first step (CUDA start-up); ``peak_gib``: the most GPU
memory torch allocated during the run (model loading included); ``tokens_per_s``: completion tokens
sampled per second of a step (the loop's ``time/tokens_per_s``, median). An arm that cannot run
prints ``skipped=<reason>`` (its family not in ``FAMILIES`` yet, no tiny model to take the
tokenizer from, vLLM not installed, the time budget spent); one that fails prints
``failed=<error>``. The runs save no checkpoint: the loop's save is replaced by a no-op (a 4B
checkpoint with its AdamW states is ~26 GB, and writing it is not what is measured).

``--tiny`` is the dry run on a CPU: the tiny models' own shapes, a few steps, small frames.

    python bench/gpu_step.py --model qwen3_vl_4b --steps 10          # on a CUDA machine
    python bench/gpu_step.py --model qwen3_vl_4b --steps 2 --tiny    # anywhere
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `vgrpo`: set before torch loads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.core.paths import ASSETS_DIR, REPO_ROOT  # noqa: E402


@dataclass(frozen=True)
class BenchModel:
    label: str  # as the output line names it
    hub_id: str  # whose published architecture the random model has
    tiny: str  # the embedded tiny model: tokenizer and processor, and the --tiny shape
    tiny_vllm: str  # the tiny model vLLM's CPU attention can serve (head_dim 64), for --tiny


MODELS = {
    "qwen2_5_vl_3b": BenchModel(
        "Qwen2.5-VL-3B", "Qwen/Qwen2.5-VL-3B-Instruct", "tiny-qwen2.5-vl", "tiny-qwen2.5-vl-hd64"
    ),
    "qwen3_vl_4b": BenchModel(
        "Qwen3-VL-4B", "Qwen/Qwen3-VL-4B-Instruct", "tiny-qwen3-vl", "tiny-qwen3-vl-hd64"
    ),
    "qwen3_5_4b": BenchModel("Qwen3.5-4B", "Qwen/Qwen3.5-4B", "tiny-qwen3.5", "tiny-qwen3.5"),
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "generation_config.json",
)
BUILT = "gpu_check_built.json"  # written last: the folder is complete
DATASET = "gpu_check"
QUESTION = "<video>\nWhich way does the square move?\nOptions:\n(A) left\n(B) right\n(C) up\n(D) down"
ANSWER = "<think>The square starts on the left and ends on the right.</think> <answer>(B) right</answer>"


def line(label: str, backend: str, shared: bool, **fields: Any) -> str:
    """One ``gpu:`` output line."""
    head = f"gpu: model={label} backend={backend} shared_prefix={'on' if shared else 'off'}"
    return " ".join([head, *(f"{k}={v}" for k, v in fields.items())])


# ---- the model --------------------------------------------------------------------------------
def bench_config(asset: Path, hub_id: str | None) -> Any:
    """The tiny model's own config (``hub_id`` None: --tiny), or ``hub_id``'s published
    architecture with the tiny model's special-token ids (inside the real vocabulary)."""
    from transformers import AutoConfig

    from trainer.model.families.published import published_config

    tiny_config = AutoConfig.from_pretrained(asset)
    if hub_id is None:
        return tiny_config
    config = published_config(hub_id)
    for source, target in ((tiny_config, config), (tiny_config.text_config, config.text_config)):
        for key, value in source.to_dict().items():
            if key.endswith("token_id"):
                setattr(target, key, value)
    return config


def build_model(spec: BenchModel, out: Path, tiny: bool, kind: str) -> Path:
    """A folder with random weights (bf16 on CUDA) of ``bench_config`` and the tiny model's
    tokenizer and processor files; reused when it is already there. ``kind``: cuda, cpu, or
    cpu-vllm (--tiny with vLLM's CPU build: the head_dim-64 tiny model)."""
    import torch

    from trainer.model.families.published import model_class

    asset = ASSETS_DIR / (spec.tiny_vllm if kind == "cpu-vllm" else spec.tiny)
    path = out / "models" / (asset.name if tiny else spec.hub_id.split("/")[-1])
    if (path / BUILT).is_file():
        return path
    config = bench_config(asset, None if tiny else spec.hub_id)
    torch.manual_seed(0)
    with torch.device("cuda" if kind == "cuda" else "cpu"):
        model = model_class(config)._from_config(config, dtype=torch.bfloat16 if kind == "cuda" else None)
    model.save_pretrained(path)
    del model
    for name in TOKENIZER_FILES:  # after save_pretrained: the tiny model's generation config wins
        if (asset / name).is_file():
            shutil.copyfile(asset / name, path / name)
    (path / BUILT).write_text(json.dumps({"from": spec.hub_id, "tiny": tiny}))
    return path


# ---- the data ---------------------------------------------------------------------------------
def register_clips(workspace: Path, px: int, frames: int, count: int = 4) -> str:
    """``count`` clips of ``frames`` frames at ``px`` x ``px`` registered as a dataset in
    ``workspace`` (the same question every time: the step, not the task, is measured)."""
    from step import write_videos  # bench/step.py

    from trainer.data.registry import register_dataset

    videos = workspace / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    clips = write_videos(videos, px, count, frames=frames, fps=8)
    rows = [
        {"id": f"clip{i}", "video": f"videos/{clip.name}",
         "conversations": [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": ANSWER}]}
        for i, clip in enumerate(clips)
    ]  # fmt: skip
    annotation = workspace / f"{DATASET}.jsonl"
    annotation.write_text("".join(json.dumps(r) + "\n" for r in rows))
    register_dataset(DATASET, annotation, workspace, overwrite=True)
    return DATASET


# ---- one arm ----------------------------------------------------------------------------------
def arm_config(args: argparse.Namespace, model_dir: Path, pixels: int, backend: str, shared: bool) -> Any:
    """The run's TrainConfig: the GPU presets' knobs, one question of ``--group`` completions a step."""
    import torch

    from trainer.core.config import build_config

    out = Path(args.out)
    on_cuda = torch.cuda.is_available()
    flash = on_cuda and importlib.util.find_spec("flash_attn") is not None
    return build_config(
        {
            "model_name_or_path": str(model_dir),
            "bf16": on_cuda,
            "gradient_checkpointing": True,
            "attn_implementation": "flash_attention_2" if flash else "sdpa",
            "shared_prefix": shared,
            "dataset_use": DATASET,
            "eval_dataset_use": "",
            "workspace": str(out / "workspace"),
            "fps": 8.0,
            "max_frames": args.frames,
            "min_pixels": pixels,
            "max_pixels": pixels,
            "grpo_sample_size": args.group,
            "generation_max_length": args.new_tokens,
            "grpo_beta": 0.04,
            "rollout_backend": backend,
            "vllm_gpu_memory_utilization": args.vllm_memory,
            "learning_rate": 1e-5,
            "max_steps": args.steps,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "output_dir": str(out / "runs" / f"{model_dir.name}-{backend}-{int(shared)}"),
            "db": f"sqlite:///{out / 'runs.db'}",
            "save_steps": 10**9,
            "grpo_logging_steps": 10**9,
        }
    )


def run_arm(cfg: Any) -> dict[str, str]:
    """One run through ``trainer.run.loop.train``; the fields of its line."""
    import torch

    from trainer.core import metrics_keys as mk
    from trainer.run import loop

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def no_save(_accelerator: Any, _model: Any, _processor: Any, state: Any, *_: Any, **__: Any) -> Path:
        return Path(cfg.run.output_dir) / f"checkpoint-{state.step}-not-saved"

    with mock.patch.object(loop, "save_checkpoint", no_save):
        outcome = loop.train(cfg)
    history = outcome.history[1:] or outcome.history  # the first step pays for CUDA's start-up
    del outcome
    gc.collect()
    peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if torch.cuda.is_available() else "n/a"
    return {
        "step_s": f"{statistics.median(h[mk.TIME_STEP_S] for h in history):.3f}",
        "peak_gib": peak,
        "tokens_per_s": f"{statistics.median(h[mk.TOKENS_PER_S] for h in history):.0f}",
    }


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".replace(" ", "_")


def model_skip_reason(spec: BenchModel) -> str | None:
    """Why no arm of ``spec`` can run here (None: they can)."""
    # Its tokenizer, processor and special-token ids (config.json) come from the tiny model.
    if not (ASSETS_DIR / spec.tiny / "tokenizer.json").is_file():
        return f"no_{spec.tiny}_(scripts/build_tiny_model.py)"
    if not (ASSETS_DIR / spec.tiny / "config.json").is_file():
        return f"{spec.tiny}_has_no_config.json_yet"
    from trainer.model.families import FAMILIES
    from trainer.model.families.published import published

    model_type = published(spec.hub_id).model_type
    if model_type not in FAMILIES:
        return f"family_{model_type}_not_in_FAMILIES"
    return None


def run_model(args: argparse.Namespace) -> list[str]:
    """Every arm of ``args.model``: its lines, in order."""
    import torch

    from trainer.model.families import FAMILIES
    from trainer.model.families.published import published

    spec = MODELS[args.model]
    label = f"{spec.label}-tiny" if args.tiny else spec.label
    arms = [(b, s) for b in args.backends for s in (False, True)]
    lines: list[str] = []
    reason = model_skip_reason(spec)
    if reason is not None:
        lines = [line(label, b, s, skipped=reason) for b, s in arms]
        print("\n".join(lines), flush=True)
        return lines
    family = FAMILIES[published(spec.hub_id).model_type]
    pixels = args.tokens_per_frame_pair * family.pixels_per_token
    # Frames about the size they are resized to, in whole 64 px (decord misreads a 48 px wide video).
    register_clips(Path(args.out) / "workspace", max(64, round(pixels**0.5 / 64) * 64), args.frames)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dirs: dict[str, Path] = {}
    for backend, shared in arms:
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            lines.append(line(label, backend, shared, skipped="vllm_not_installed"))
        elif time.time() + args.min_arm_s > args.deadline:
            lines.append(
                line(label, backend, shared, skipped=f"time_budget_({args.deadline - time.time():.0f}s_left)")
            )
        else:
            kind = "cpu-vllm" if backend == "vllm" and device == "cpu" else device
            try:
                if kind not in dirs:
                    dirs[kind] = build_model(spec, Path(args.out), args.tiny, kind)
                fields = run_arm(arm_config(args, dirs[kind], pixels, backend, shared))
                lines.append(line(label, backend, shared, **fields))
            except Exception as exc:  # noqa: BLE001 - a bench's edge: report the arm, go on to the next
                logging.getLogger(__name__).exception("arm %s %s %s failed", label, backend, shared)
                lines.append(line(label, backend, shared, failed=first_line(exc)))
        print(lines[-1], flush=True)
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--backends", nargs="+", choices=("hf", "vllm"), default=["hf", "vllm"])
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per arm")
    parser.add_argument("--tiny", action="store_true", help="dry run: the tiny models' shapes, on any device")
    parser.add_argument("--group", type=int, default=8, help="G: completions per question")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--new-tokens", type=int, default=64, help="generation_max_length")
    parser.add_argument(
        "--tokens-per-frame-pair", type=int, default=128, help="visual tokens per temporal patch (max_pixels)"
    )
    parser.add_argument("--vllm-memory", type=float, default=0.3, help="vllm_gpu_memory_utilization")
    parser.add_argument(
        "--deadline", type=float, default=float("inf"), help="epoch seconds: start no arm after"
    )
    parser.add_argument("--min-arm-s", type=float, default=60.0, help="an arm needs this long, or is skipped")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "gpu"))
    args = parser.parse_args(argv)
    if args.tiny:  # the tiny models' frames are 64 px (4 tokens); a dry run needs no long completions
        args.tokens_per_frame_pair = min(args.tokens_per_frame_pair, 4)
        args.new_tokens = min(args.new_tokens, 8)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_step: no CUDA device here (torch.cuda.is_available() is False); --tiny runs on a CPU",
              file=sys.stderr)  # fmt: skip
        return 2
    run_model(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
