"""Build the embedded synthetic video MCQ dataset (assets/synthetic_motion/): "which way does the square go?".

Deterministic for a given --seed. Design for a ~340k-parameter Qwen2.5-VL on a CPU (see
shared/QWEN_VL_NOTES.md, "What a tiny model can learn"):

- 64x64 px h264 clips of 8 frames at 8 fps, decoded by qwen-vl-utils at 56x56 (min = max pixels) so
  each clip becomes 4 temporal steps x 2x2 merged tokens = 16 ``<|video_pad|>`` tokens.
- A large square (28 px in the file, ~24.5 px decoded) travels 28-36 px, so it moves from one 28x28
  token cell to the other; a 12-px square nudged a few px was not learnable even with labels.
- The option order is FIXED ((A) left (B) right (C) up (D) down): a 2-layer model could not bind the
  seen direction to a letter that moved between questions.
- Nuisance factors: square colour (7 named colours, jittered), background level, a smooth static
  background texture, start offset and the position across the motion axis. One frame does not give
  the answer: a square at a corner may be about to go either way along either axis.

Each clip also gets a one-frame image form (the 8 frames resized to 56 px and tiled 4x2 in time
order, 224x112 px = 32 image tokens) for trainers that take only images.

``--numerical`` builds only the numerical split instead ("How many times does the square
bounce?", answer 0, 1 or 2, no options, ``"problem_type": "numerical"``): train_numerical.jsonl,
eval_numerical.jsonl, their _no_think twins and videos/n_*.mp4, from a random stream of its own, so
the direction files above stay byte for byte the same. Its design is with ``BounceClip``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from trainer.core.paths import SYNTHETIC_DIR  # noqa: E402
from trainer.data.prompts import answer_text, format_options  # noqa: E402

NAME = "synthetic_motion"
FRAME_PX = 64  # file frame size; qwen-vl-utils resizes to DECODED_PX (a multiple of 28)
DECODED_PX = 56
NUM_FRAMES = 8
FPS = 8
SQUARE_PX = 28
MIN_TRAVEL_PX, MAX_TRAVEL_PX = 28, FRAME_PX - SQUARE_PX  # 28..36: always crosses a token cell
TILE_COLS, TILE_ROWS = 4, 2
CRF = 16  # visually clean square and colours through yuv420p, ~3 KB a clip (15 MB budget)

OPTIONS = {"A": "left", "B": "right", "C": "up", "D": "down"}
LETTER_OF = {text: letter for letter, text in OPTIONS.items()}
QUESTION = "Which way does the square move?"
# (dx, dy) per direction, image coordinates (y grows downwards).
STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (60, 100, 240),
    "yellow": (230, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 210, 220),
    "white": (235, 235, 235),
}
SIDE = {"left": "left", "right": "right", "up": "top", "down": "bottom"}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}

# The video knobs the training preset reads (trainer.data.video.VideoConfig fields).
VIDEO_CONFIG = {
    "fps": float(FPS),
    "max_frames": NUM_FRAMES,
    "min_pixels": DECODED_PX * DECODED_PX,
    "max_pixels": DECODED_PX * DECODED_PX,
    "total_pixels": None,
}
IMAGE_PX = (TILE_COLS * DECODED_PX, TILE_ROWS * DECODED_PX)  # (width, height)
IMAGE_CONFIG = {"min_pixels": IMAGE_PX[0] * IMAGE_PX[1], "max_pixels": IMAGE_PX[0] * IMAGE_PX[1]}
VIDEO_TOKENS = (NUM_FRAMES // 2) * (DECODED_PX // 28) ** 2
IMAGE_TOKENS = (IMAGE_PX[0] // 28) * (IMAGE_PX[1] // 28)


@dataclass(frozen=True)
class Clip:
    """Everything that decides one clip's pixels."""

    id: str
    direction: str
    colour: str
    rgb: tuple[int, int, int]
    background: int  # mean grey level
    texture_seed: int
    travel_px: int
    start_px: int  # start along the motion axis
    cross_px: int  # position across the motion axis

    def positions(self) -> list[tuple[int, int]]:
        """Top-left (x, y) of the square in each frame."""
        dx, dy = STEP[self.direction]
        out = []
        for i in range(NUM_FRAMES):
            along = round(self.start_px + self.travel_px * i / (NUM_FRAMES - 1))
            if dx:
                x = along if dx > 0 else FRAME_PX - SQUARE_PX - along
                out.append((x, self.cross_px))
            else:
                y = along if dy > 0 else FRAME_PX - SQUARE_PX - along
                out.append((self.cross_px, y))
        return out

    def key(self) -> tuple:
        return (
            self.direction,
            self.colour,
            self.rgb,
            self.background,
            self.travel_px,
            self.start_px,
            self.cross_px,
        )


def sample_clip(rng: np.random.Generator, clip_id: str) -> Clip:
    direction = str(rng.choice(list(OPTIONS.values())))
    colour = str(rng.choice(list(COLOURS)))
    rgb = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLOURS[colour])
    travel = int(rng.integers(MIN_TRAVEL_PX, MAX_TRAVEL_PX + 1))
    return Clip(
        id=clip_id,
        direction=direction,
        colour=colour,
        rgb=rgb,  # type: ignore[arg-type]
        background=int(rng.integers(0, 71)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        travel_px=travel,
        start_px=int(rng.integers(0, MAX_TRAVEL_PX - travel + 1)),
        cross_px=int(rng.integers(0, FRAME_PX - SQUARE_PX + 1)),
    )


def render(clip: Clip | BounceClip) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: a static smooth texture and the moving square."""
    from PIL import Image

    trng = np.random.default_rng(clip.texture_seed)
    # An 8x8 grid of noise upsampled: texture the vision tower must ignore, yet cheap to compress.
    coarse = trng.normal(0.0, 12.0, size=(8, 8)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((FRAME_PX, FRAME_PX), Image.BILINEAR))
    base = np.clip(clip.background + smooth, 0, 255)
    tint = np.array([1.0, 0.95, 1.05])  # a slightly bluish grey so colour channels are not identical
    frame0 = np.clip(base[..., None] * tint, 0, 255).astype(np.uint8)
    frames = np.repeat(frame0[None], NUM_FRAMES, axis=0)
    for i, (x, y) in enumerate(clip.positions()):
        frames[i, y : y + SQUARE_PX, x : x + SQUARE_PX] = clip.rgb
    return frames


def write_mp4(frames: np.ndarray, path: Path) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = FRAME_PX, FRAME_PX
        stream.pix_fmt = "yuv420p"
        # One thread and fixed options: x264 output is then the same bytes on every run.
        stream.codec_context.options = {"crf": str(CRF), "preset": "medium", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def tile(frames: np.ndarray) -> np.ndarray:
    """Frames resized to the decoded size and tiled TILE_COLS x TILE_ROWS in time order (row-major)."""
    from PIL import Image

    small = [np.asarray(Image.fromarray(f).resize((DECODED_PX, DECODED_PX), Image.BILINEAR)) for f in frames]
    rows = [np.concatenate(small[r * TILE_COLS : (r + 1) * TILE_COLS], axis=1) for r in range(TILE_ROWS)]
    return np.concatenate(rows, axis=0)


def think_text(clip: Clip) -> str:
    start, end = SIDE[OPPOSITE[clip.direction]], SIDE[clip.direction]
    return (
        f"The {clip.colour} square starts near the {start} and ends near the {end}, "
        f"so it moves {clip.direction}."
    )


def human_text(placeholder: str) -> str:
    return f"{placeholder}\n{QUESTION}\nOptions:\n{format_options(OPTIONS)}"


def records(clip: Clip) -> dict[str, dict]:
    """The clip's record in each variant: think, no_think and image (think)."""
    letter = LETTER_OF[clip.direction]
    think = answer_text(letter, OPTIONS, think=think_text(clip))
    plain = answer_text(letter, OPTIONS)

    def conv(placeholder: str, answer: str) -> list[dict]:
        return [{"from": "human", "value": human_text(placeholder)}, {"from": "gpt", "value": answer}]

    video = f"videos/{clip.id}.mp4"
    return {
        "": {"id": clip.id, "video": video, "conversations": conv("<video>", think)},
        "_no_think": {"id": clip.id, "video": video, "conversations": conv("<video>", plain)},
        "_image": {"id": clip.id, "image": f"images/{clip.id}.png", "conversations": conv("<image>", think)},
    }


def sample_clips(seed: int, counts: dict[str, int]) -> dict[str, list[Clip]]:
    """Clips per split; no two clips (across splits) share their parameters."""
    rng = np.random.default_rng(seed)
    seen: set[tuple] = set()
    out: dict[str, list[Clip]] = {}
    n = 0
    for split, count in counts.items():
        clips: list[Clip] = []
        while len(clips) < count:
            n += 1
            clip = sample_clip(rng, f"m_{n:04d}")
            if clip.key() in seen:
                continue
            seen.add(clip.key())
            clips.append(clip)
        out[split] = clips
    return out


def build(out_dir: Path, seed: int, counts: dict[str, int]) -> dict:
    from PIL import Image

    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    splits = sample_clips(seed, counts)
    for split, clips in splits.items():
        lines: dict[str, list[str]] = {"": [], "_no_think": [], "_image": []}
        for clip in clips:
            frames = render(clip)
            write_mp4(frames, out_dir / "videos" / f"{clip.id}.mp4")
            # 64 palette colours: the square's colour and the smooth texture survive; half the bytes.
            image = Image.fromarray(tile(frames)).quantize(64, method=Image.Quantize.MEDIANCUT)
            image.save(out_dir / "images" / f"{clip.id}.png", optimize=True)
            for suffix, record in records(clip).items():
                lines[suffix].append(json.dumps(record))
        for suffix, rows in lines.items():
            (out_dir / f"{split}{suffix}.jsonl").write_text("\n".join(rows) + "\n")
    meta = {
        "name": NAME,
        "description": "Direction of motion of a large square (8 frames, 64x64 px, 8 fps); needs time.",
        "seed": seed,
        "video": VIDEO_CONFIG,
        "image": IMAGE_CONFIG,
        "video_tokens_per_prompt": VIDEO_TOKENS,
        "image_tokens_per_prompt": IMAGE_TOKENS,
        "frames": NUM_FRAMES,
        "frame_size": [FRAME_PX, FRAME_PX],
        "decoded_size": [DECODED_PX, DECODED_PX],
        "question": QUESTION,
        "options": list(OPTIONS.values()),
        "splits": {split: len(clips) for split, clips in splits.items()},
        "files": {
            split: {
                mode: f"{split}{suffix}.jsonl"
                for mode, suffix in (("think", ""), ("no_think", "_no_think"), ("image", "_image"))
            }
            for split in splits
        },
    }
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --- The numerical split: "How many times does the square bounce?" (--numerical) ---------------
#
# The square goes back and forth along the x axis between two ends (lo: 0-4 px, hi: 32-36 px, so
# each end fills one 28-px token column) in legs of LEG_FRAMES frame steps (end, middle, other end:
# 16-18 px a frame) and may rest at either end between legs. A bounce is a reversal of direction,
# so `count` bounces are `count` + 1 legs; 8 frames hold 7 frame steps, so 2 bounces (3 legs) at
# most. The 4 temporal tokens then see the square's column change 1, 2 or 3 times. Every clip moves
# at the same speed (only the rests differ), and one frame shows only where the square is: the
# first and last frames together give the parity, not the count (0 and 2 both end on the far side).
# Learnability (MCQ twin "(A) 0 (B) 1 (C) 2", no_think bench, seed 0, 2 busy cores): held-out 0.335
# until step 250, 0.685 at step 275. Jumps between frame pairs instead (no middle frame) stayed at
# 0.335 for 183 steps.

BOUNCE_QUESTION = "How many times does the square bounce?"
BOUNCE_COUNTS = (0, 1, 2)
BOUNCE_PREFIX = "n_"
LEG_FRAMES = 2
BOUNCE_LO_PX = (0, 4)
BOUNCE_HI_PX = (FRAME_PX - SQUARE_PX - 4, FRAME_PX - SQUARE_PX)  # 32..36
BOUNCE_SPLITS = {"train": "train_numerical", "eval": "eval_numerical"}  # split -> file stem


@dataclass(frozen=True)
class BounceClip:
    """Everything that decides one bounce clip's pixels; ``count`` is the answer."""

    id: str
    count: int
    colour: str
    rgb: tuple[int, int, int]
    background: int
    texture_seed: int
    lo_px: int
    hi_px: int
    starts_high: bool  # the first leg goes from hi to lo (leftwards)
    rests: tuple[int, ...]  # frame steps at rest: before the first leg, at each bounce, after the last
    cross_px: int

    def xs(self) -> list[int]:
        """The square's left edge in each frame."""
        ends = (self.hi_px, self.lo_px) if self.starts_high else (self.lo_px, self.hi_px)
        x = [ends[0]] * (self.rests[0] + 1)
        for leg in range(self.count + 1):
            start, end = ends[leg % 2], ends[(leg + 1) % 2]
            x += [round(start + (end - start) * k / LEG_FRAMES) for k in range(1, LEG_FRAMES + 1)]
            x += [end] * self.rests[leg + 1]
        return x

    def positions(self) -> list[tuple[int, int]]:
        return [(x, self.cross_px) for x in self.xs()]

    def key(self) -> tuple:
        return (
            self.count,
            self.colour,
            self.rgb,
            self.background,
            self.lo_px,
            self.hi_px,
            self.starts_high,
            self.rests,
            self.cross_px,
        )


def count_reversals(xs: list[int]) -> int:
    """Direction reversals in a sequence of positions (rests do not count).

    >>> count_reversals([0, 18, 36, 36, 18, 0, 0, 0])
    1
    """
    signs = [int(np.sign(b - a)) for a, b in pairwise(xs) if b != a]
    return sum(s != t for s, t in pairwise(signs))


def sample_bounce_clip(rng: np.random.Generator, clip_id: str, count: int) -> BounceClip:
    colour = str(rng.choice(list(COLOURS)))
    rgb = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLOURS[colour])
    rest_steps = NUM_FRAMES - 1 - LEG_FRAMES * (count + 1)
    slots = count + 2
    return BounceClip(
        id=clip_id,
        count=count,
        colour=colour,
        rgb=rgb,  # type: ignore[arg-type]
        background=int(rng.integers(0, 71)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        lo_px=int(rng.integers(BOUNCE_LO_PX[0], BOUNCE_LO_PX[1] + 1)),
        hi_px=int(rng.integers(BOUNCE_HI_PX[0], BOUNCE_HI_PX[1] + 1)),
        starts_high=bool(rng.integers(0, 2)),
        rests=tuple(int(r) for r in rng.multinomial(rest_steps, [1 / slots] * slots)),
        cross_px=int(rng.integers(0, FRAME_PX - SQUARE_PX + 1)),
    )


def sample_bounce_clips(seed: int, counts: dict[str, int]) -> dict[str, list[BounceClip]]:
    """Clips per split, each split's answers balanced (as equal as ``count`` allows) and shuffled;
    a random stream of its own, so the direction clips do not change with it."""
    rng = np.random.default_rng([seed, 1])
    seen: set[tuple] = set()
    out: dict[str, list[BounceClip]] = {}
    n = 0
    for split, count in counts.items():
        answers = rng.permutation(np.resize(np.array(BOUNCE_COUNTS), count))
        clips: list[BounceClip] = []
        for answer in answers:
            while True:
                n += 1
                clip = sample_bounce_clip(rng, f"{BOUNCE_PREFIX}{n:04d}", int(answer))
                if clip.key() not in seen:
                    break
            seen.add(clip.key())
            clips.append(clip)
        out[split] = clips
    return out


def bounce_think_text(clip: BounceClip) -> str:
    first, second = ("left", "right") if clip.starts_high else ("right", "left")
    legs = ", then ".join(first if leg % 2 == 0 else second for leg in range(clip.count + 1))
    turns = ("never turns back", "turns back once", "turns back twice")[clip.count]
    return f"The {clip.colour} square moves {legs}: it {turns}."


def bounce_records(clip: BounceClip) -> dict[str, dict]:
    """The clip's numerical record, think and no_think: no options, the answer is the number."""
    answer = f"<answer>{clip.count}</answer>"

    def record(reply: str) -> dict:
        human = {"from": "human", "value": f"<video>\n{BOUNCE_QUESTION}"}
        return {
            "id": clip.id,
            "video": f"videos/{clip.id}.mp4",
            "problem_type": "numerical",
            "conversations": [human, {"from": "gpt", "value": reply}],
        }

    return {"": record(f"<think>{bounce_think_text(clip)}</think> {answer}"), "_no_think": record(answer)}


def write_bounce_split(out_dir: Path, stem: str, clips: list[BounceClip], videos: bool = True) -> None:
    """``<stem>.jsonl`` and ``<stem>_no_think.jsonl`` (and each clip's video unless ``videos`` is False)."""
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"": [], "_no_think": []}
    for clip in clips:
        if videos:
            write_mp4(render(clip), out_dir / "videos" / f"{clip.id}.mp4")
        for suffix, record in bounce_records(clip).items():
            lines[suffix].append(json.dumps(record))
    for suffix, rows in lines.items():
        (out_dir / f"{stem}{suffix}.jsonl").write_text("\n".join(rows) + "\n")


def build_numerical(out_dir: Path, seed: int, counts: dict[str, int]) -> dict[str, int]:
    """The numerical split's files under ``out_dir``; the direction dataset's files are left alone."""
    splits = sample_bounce_clips(seed, counts)
    for split, clips in splits.items():
        write_bounce_split(out_dir, BOUNCE_SPLITS[split], clips)
    return {split: len(clips) for split, clips in splits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SYNTHETIC_DIR, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=2000, help="train records")
    parser.add_argument("--eval", type=int, default=200, help="held-out eval records")
    parser.add_argument(
        "--numerical",
        action="store_true",
        help="build only the numerical split (train_numerical*.jsonl, eval_numerical*.jsonl, "
        "videos/n_*.mp4: how many times does the square bounce?), leaving the direction files alone",
    )
    args = parser.parse_args(argv)
    counts = {"train": args.train, "eval": args.eval}
    splits = (
        build_numerical(args.out, args.seed, counts)
        if args.numerical
        else build(args.out, args.seed, counts)["splits"]
    )
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {splits} to {args.out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
