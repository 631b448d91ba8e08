"""Step time of our GRPO step: shared prefix against per sample, and against TRL's GRPOTrainer.

Two parts, each printing lines a script can read (medians over --steps steps after --warmup
warm-up steps, the two arms alternating step by step in one process):

    shared-prefix: family=qwen3_vl frames=16 px=224 G=8 per_sample=1.23s shared=0.61s speedup=2.02x
        peak_mem_ratio=0.71 lm=h256-l4      (one line)
    vs-trl: new_tokens=16 ours=0.20s trl=0.55s ratio=0.36

``shared-prefix``: one line per supported family with an embedded tiny model (``--families`` picks):
a random-initialised model of that family whose language model matters (hidden 256, 4 layers,
head_dim 64 by default, named by ``lm=``; the tiny model's tokenizer, processor and vision tower:
the real checkpoints are too slow for a CPU), 16-frame videos at ``--px`` (224) px, G = ``--groups``
(8), ``shared_prefix`` off and on. ``peak_mem_ratio`` is shared / per-sample
peak memory of a step above its start (CUDA: allocated; CPU: malloc heap in use, sampled),
median of --memory-steps extra untimed steps per arm.

``vs-trl``: the embedded tiny model on the image form of the synthetic task, our step against
``trl.GRPOTrainer`` (no vLLM) with the same prompts, G, prompts per step, completion length
(forced: ``min_new_tokens``), beta, learning rate and one update per generation. TRL drives the
loop; a callback runs one of our steps after each of TRL's, so the arms alternate.

    .venv/bin/python bench/step.py                      # both parts (a few minutes, 1 thread)
    .venv/bin/python bench/step.py --part vs-trl --steps 10
    .venv/bin/python bench/step.py --part vs-trl --clock cpu   # on a machine others are using
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# As in `vgrpo`: passive OpenMP waits, set before torch loads (see trainer/cli/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from trainer.core.config import build_config  # noqa: E402
from trainer.core.paths import ASSETS_DIR, REPO_ROOT, TINY_MODEL_DIR  # noqa: E402
from trainer.data import load_dataset_use  # noqa: E402
from trainer.model.loading import generation_kwargs, load_policy  # noqa: E402
from trainer.model.trainable import set_trainable, trainable_parameters  # noqa: E402
from trainer.score.rewards import score_completion  # noqa: E402
from trainer.step.context import StepContext  # noqa: E402
from trainer.step.grpo_step import grpo_step  # noqa: E402

BETA = 0.04
LEARNING_RATE = 1e-5
OPTIONS = {"A": "left", "B": "right", "C": "up", "D": "down"}


# ---- measuring -------------------------------------------------------------------------------
def heap_in_use() -> int:
    """Bytes glibc's malloc holds for the program (main arena + mmapped blocks), via mallinfo2.

    Unlike RSS this drops when tensors are freed, so a step's peak above its start is visible even
    after the allocator has kept the pages of earlier steps. One torch thread: all tensors are
    allocated from the main thread's arena."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


@contextmanager
def peak_memory() -> Iterator[list[float]]:
    """Yields a list that holds, on exit, the peak memory (bytes) the block added: CUDA allocated
    memory, or on the CPU the malloc heap in use, sampled every 5 ms."""
    out: list[float] = []
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        out.append(float(torch.cuda.max_memory_allocated() - base))
        return
    base = heap_in_use()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], heap_in_use())
            done.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        out.append(float(max(peak[0], heap_in_use()) - base))


# The clock steps are timed with: wall time, or with --clock cpu this process's CPU time, which on
# a machine other jobs are using counts only the time the step actually ran (main()).
CLOCK: Callable[[], float] = time.perf_counter


def seconds_of(step: Callable[[], Any]) -> float:
    start = CLOCK()
    step()
    return CLOCK() - start


def peak_of(step: Callable[[], Any]) -> float:
    """Peak bytes one call added. Measured on separate steps, never on timed ones: the sampling
    thread takes the GIL every 5 ms and slowed a tiny-model step by ~50%."""
    with peak_memory() as mem:
        step()
    return mem[0]


# ---- our step --------------------------------------------------------------------------------
def our_step(
    model_dir: Path, records: list[Any], values: dict[str, Any], new_tokens: int, seed: int
) -> Callable[[], Any]:
    """A closure running one GRPO step of our trainer on ``records`` (policy, reference, AdamW)."""
    from accelerate import Accelerator

    cfg = build_config(
        {
            "model_name_or_path": str(model_dir),
            "generation_max_length": new_tokens,
            "grpo_beta": BETA,
            "learning_rate": LEARNING_RATE,
            "num_iterations": 1,
            **values,
        }
    )
    torch.manual_seed(seed)
    model, processor = load_policy(model_dir)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    model = set_trainable(model, cfg.model).train()
    # fused, as trainer/run/loop.py (and transformers' Trainer, so TRL) use
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=LEARNING_RATE, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    sample_kwargs = generation_kwargs(processor, new_tokens)
    sample_kwargs["min_new_tokens"] = new_tokens  # the same completion length in every arm
    ctx = StepContext(
        Accelerator(cpu=not torch.cuda.is_available()),
        model,
        ref_model,
        processor,
        cfg,
        optimizer,
        scheduler,
        sample_kwargs,
    )
    return lambda: grpo_step(ctx, [records])


def median_line(times: list[float], warmup: int) -> float:
    return statistics.median(times[warmup:])


# ---- shared prefix vs per sample -------------------------------------------------------------
def bench_families() -> dict[str, Path]:
    """Each supported family that has an embedded tiny model: model_type -> its folder (read from
    the folders' config.json, so a family lands here with its tiny model)."""
    from trainer.model.families import FAMILIES

    found: dict[str, Path] = {}
    for path in sorted(ASSETS_DIR.glob("tiny-*")):
        config = path / "config.json"
        if not config.is_file() or path.name.endswith("-hd64"):  # hd64: the same family for vLLM
            continue
        model_type = json.loads(config.read_text())["model_type"]
        if model_type in FAMILIES:
            found.setdefault(model_type, path)
    return found


def scaled_mrope_section(model_type: str, rotary_half: int) -> list[int]:
    """The family's published mrope split (time, height, width) scaled to ``rotary_half``
    frequencies, e.g. Qwen2.5-VL's [16, 24, 24] of 64 -> [8, 12, 12] of 32."""
    from trainer.model.families.published import PUBLISHED

    real = next(
        p.text["rope_parameters"]["mrope_section"] for p in PUBLISHED.values() if p.model_type == model_type
    )
    scaled = [round(s * rotary_half / sum(real)) for s in real]
    scaled[0] += rotary_half - sum(scaled)
    return scaled


def build_bench_model(out: Path, tiny_dir: Path, hidden: int, layers: int) -> Path:
    """A random-initialised model of ``tiny_dir``'s family with a language model that matters
    (``hidden`` wide, ``layers`` deep, head_dim 64; the tiny model's tokenizer, processor and
    vision tower), saved under ``out``."""
    from transformers import AutoConfig

    from trainer.model.families.published import model_class

    path = out / f"bench-{tiny_dir.name}-h{hidden}-l{layers}"
    if (path / "config.json").exists():
        return path
    config = AutoConfig.from_pretrained(tiny_dir)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = hidden, 4 * hidden, layers
    text.num_attention_heads, text.num_key_value_heads = hidden // 64, max(1, hidden // 128)
    if getattr(text, "head_dim", None):
        text.head_dim = 64
    rope = dict(text.rope_parameters)
    rope["mrope_section"] = scaled_mrope_section(
        config.model_type, int(64 * rope.get("partial_rotary_factor", 1)) // 2
    )
    text.rope_parameters = rope
    if getattr(text, "layer_types", None):  # the tiny model's pattern (Qwen3.5: linear, ..., full)
        pattern = list(text.layer_types)
        text.layer_types = [pattern[i % len(pattern)] for i in range(layers)]
    text.initializer_range = 0.02
    vision = config.vision_config
    # The merger's output width: out_hidden_size, or Qwen2-VL's hidden_size (its width is embed_dim).
    setattr(vision, "out_hidden_size" if hasattr(vision, "out_hidden_size") else "hidden_size", hidden)
    torch.manual_seed(0)
    model = model_class(config)(config)
    shutil.copytree(tiny_dir, path, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    model.save_pretrained(path)
    return path


def write_videos(out: Path, px: int, count: int, frames: int = 16, fps: int = 8) -> list[Path]:
    """``count`` clips of a square crossing the frame, ``frames`` frames at ``px`` x ``px``."""
    import av
    import numpy as np

    paths = []
    for i in range(count):
        path = out / f"clip-{px}px-{i}.mp4"
        paths.append(path)
        if path.exists():
            continue
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width = stream.height = px
            stream.pix_fmt = "yuv420p"
            side = px // 4
            for f in range(frames):
                frame = np.full((px, px, 3), 30 + 40 * i, dtype=np.uint8)
                x = (px - side) * f // max(frames - 1, 1)
                frame[px // 3 : px // 3 + side, x : x + side] = (220, 40, 200)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return paths


def shared_prefix_part(args: argparse.Namespace, out: Path) -> list[str]:
    from dataclasses import dataclass

    @dataclass
    class Rec:
        id: str
        video: str
        question: str = "Which way does the square move?"
        options: dict = None  # type: ignore[assignment]
        answer: str = "B"
        image: None = None
        mode: str = "think"
        location: str = ""

    families = bench_families()
    lines = []
    for model_type in args.families or families:
        if model_type not in families:
            raise SystemExit(f"no embedded tiny model of family {model_type!r}; found: {', '.join(families)}")
        model_dir = build_bench_model(out, families[model_type], args.hidden, args.layers)
        for px in args.px:
            clips = write_videos(out, px, args.prompts)
            records = [Rec(f"clip{i}", str(p), options=OPTIONS) for i, p in enumerate(clips)]
            for group in args.groups:
                line = shared_prefix_line(args, model_dir, records, px, group)
                print(line, flush=True)  # noqa: T201
                lines.append(line)
    return lines


def shared_prefix_line(
    args: argparse.Namespace, model_dir: Path, records: list[Any], px: int, group: int
) -> str:
    """Per-sample against shared-prefix steps of one model, frame size and G, alternating."""
    video = {"fps": 8.0, "max_frames": 16, "min_pixels": px * px, "max_pixels": px * px}
    arms = {
        shared: our_step(
            model_dir,
            records,
            {**video, "grpo_sample_size": group, "shared_prefix": shared},
            args.new_tokens,
            seed=0,
        )
        for shared in (False, True)
    }
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(args.warmup + args.steps):
        for shared in (False, True) if i % 2 == 0 else (True, False):
            times[shared].append(seconds_of(arms[shared]))
    mems = {shared: [peak_of(arms[shared]) for _ in range(args.memory_steps)] for shared in arms}
    per, sh = (median_line(times[s], args.warmup) for s in (False, True))
    mem_ratio = statistics.median(mems[True]) / max(statistics.median(mems[False]), 1.0)
    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    return (
        f"shared-prefix: family={model_type} frames=16 px={px} G={group} per_sample={per:.3f}s "
        f"shared={sh:.3f}s speedup={per / sh:.2f}x peak_mem_ratio={mem_ratio:.2f} "
        f"lm=h{args.hidden}-l{args.layers}"
    )


# ---- ours vs TRL -----------------------------------------------------------------------------
def trl_dataset(records: list[Any]) -> Any:
    from datasets import Dataset
    from PIL import Image

    from trainer.data.prompts import user_text

    rows = [
        {
            "prompt": [{"role": "user", "content": user_text(r.question, r.options, r.mode)}],
            "image": Image.open(r.image).convert("RGB"),
            "answer": r.answer,
            "options": json.dumps(dict(r.options)),
            "mode": r.mode,
        }
        for r in records
    ]
    return Dataset.from_list(rows)


def trl_reward(completions: list[Any], answer: list[str], options: list[str], mode: list[str], **_: Any):
    """Our format + accuracy reward, as a TRL reward function (weights 0.3 / 0.7 like our config)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [
        score_completion(t, a, json.loads(o), mode=m, format_weight=0.3, accuracy_weight=0.7).total_reward
        for t, a, o, m in zip(texts, answer, options, mode, strict=True)
    ]


class Alternate(TrainerCallback):
    """A TRL callback: times each TRL step, then runs one of ours (timed) before the next."""

    def __init__(self, ours: Callable[[], Any]) -> None:
        self.ours = ours
        self.trl_times: list[float] = []
        self.ours_times: list[float] = []
        self.start = 0.0

    def on_step_begin(self, *_: Any, **__: Any) -> None:
        self.start = CLOCK()

    def on_step_end(self, *_: Any, **__: Any) -> None:
        self.trl_times.append(CLOCK() - self.start)
        self.ours_times.append(seconds_of(self.ours))


def vs_trl_line(args: argparse.Namespace, out: Path, records: list[Any], new_tokens: int) -> str:
    from trl import GRPOConfig, GRPOTrainer

    group = 4
    pixels = 25088  # the synthetic images' size: neither side resizes them
    values = {"grpo_sample_size": group, "min_pixels": pixels, "max_pixels": pixels}
    alternate = Alternate(our_step(TINY_MODEL_DIR, records, values, new_tokens, seed=0))
    model, processor = load_policy(TINY_MODEL_DIR)
    suppress = generation_kwargs(processor, new_tokens)["suppress_tokens"]
    config = GRPOConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=len(records) * group,  # TRL counts completions
        num_generations=group,
        max_completion_length=new_tokens,
        beta=BETA,
        learning_rate=LEARNING_RATE,
        num_iterations=1,
        max_steps=args.warmup + args.steps,
        temperature=1.0,
        generation_kwargs={"min_new_tokens": new_tokens, "suppress_tokens": suppress},
        use_vllm=False,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
    )
    # The same prompts every step, in both arms.
    rows = [records[i % len(records)] for i in range(len(records) * (args.warmup + args.steps))]
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[trl_reward],
        args=config,
        train_dataset=trl_dataset(rows),
        processing_class=processor,
        callbacks=[alternate],
    )
    trainer.train()
    o = median_line(alternate.ours_times, args.warmup)
    t = median_line(alternate.trl_times, args.warmup)
    return f"vs-trl: new_tokens={new_tokens} ours={o:.3f}s trl={t:.3f}s ratio={o / t:.2f}"


def vs_trl_part(args: argparse.Namespace, out: Path) -> list[str]:
    workspace = Path(tempfile.mkdtemp(prefix="bench-step-ws-", dir=out))
    records = load_dataset_use("synthetic_motion_image_train", workspace, 0)[: args.prompts]
    lines = []
    for new_tokens in (16, 64):
        line = vs_trl_line(args, out, records, new_tokens)
        print(line, flush=True)  # noqa: T201
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("all", "shared-prefix", "vs-trl"), default="all")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per arm (medians)")
    parser.add_argument("--warmup", type=int, default=1, help="steps per arm before measuring")
    parser.add_argument("--prompts", type=int, default=1, help="questions per step")
    parser.add_argument("--memory-steps", type=int, default=2, help="untimed steps per arm for memory")
    parser.add_argument("--new-tokens", type=int, default=16, help="completion length (shared-prefix part)")
    parser.add_argument("--px", type=int, nargs="+", default=[224], help="shared-prefix: frame sizes")
    parser.add_argument("--groups", type=int, nargs="+", default=[8], help="shared-prefix: G values")
    parser.add_argument(
        "--families",
        nargs="+",
        default=None,
        help="shared-prefix: model_types to measure (default: every supported family with a tiny model)",
    )
    parser.add_argument("--hidden", type=int, default=256, help="bench model's language-model width")
    parser.add_argument("--layers", type=int, default=4, help="bench model's language-model layers")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time steps by wall clock, or by this process's CPU time (steadier on a busy machine)",
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "step"))
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    if args.part in ("all", "shared-prefix"):
        lines += shared_prefix_part(args, out)
    if args.part in ("all", "vs-trl"):
        lines += vs_trl_part(args, out)
    (out / "results.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
