"""The embedded synthetic video dataset (assets/synthetic_motion): files, splits, decoding, and
that the answer is in the motion (first vs last frame), computed from pixels; and its numerical
split (how many times the square bounces): rebuilt byte for byte, balanced, the answer counted from
the generated positions and from the decoded frames."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest

from trainer.core.paths import REPO_ROOT
from trainer.core.video_config import VideoConfig
from trainer.data.video import fetch_vision

SCRIPT = REPO_ROOT / "scripts" / "make_synthetic_dataset.py"

OPTIONS_TEXT = "Options:\n(A) left\n(B) right\n(C) up\n(D) down"
LETTERS = {"A": "left", "B": "right", "C": "up", "D": "down"}
VARIANTS = ("", "_no_think", "_image")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def meta(synthetic_dir: Path) -> dict:
    return json.loads((synthetic_dir / "dataset.json").read_text())


@pytest.fixture(scope="module")
def splits(synthetic_dir: Path) -> dict[str, dict[str, list[dict]]]:
    return {s: {v: _read(synthetic_dir / f"{s}{v}.jsonl") for v in VARIANTS} for s in ("train", "eval")}


def _letter(record: dict) -> str:
    answer = record["conversations"][1]["value"]
    return answer.split("<answer>(")[1][0]


def test_dataset_json_describes_the_files(meta: dict, splits: dict) -> None:
    assert meta["name"] == "synthetic_motion"
    assert meta["options"] == ["left", "right", "up", "down"]
    assert meta["splits"] == {"train": 2000, "eval": 200}
    for split, count in meta["splits"].items():
        assert {v: len(rows) for v, rows in splits[split].items()} == dict.fromkeys(VARIANTS, count)
    video = VideoConfig(**meta["video"])
    assert (video.fps, video.max_frames, video.min_pixels, video.max_pixels) == (8.0, 8, 3136, 3136)
    assert meta["video_tokens_per_prompt"] == 16


def test_records_follow_the_seed_format_with_fixed_options(splits: dict, synthetic_dir: Path) -> None:
    for split in ("train", "eval"):
        think, plain, image = (splits[split][v] for v in VARIANTS)
        for t, p, i in zip(think, plain, image, strict=True):
            assert t["id"] == p["id"] == i["id"]
            human = t["conversations"][0]["value"]
            assert human.startswith("<video>\n") and human.endswith(OPTIONS_TEXT)
            assert i["conversations"][0]["value"] == human.replace("<video>", "<image>")
            assert t["video"] == p["video"] == f"videos/{t['id']}.mp4"
            assert i["image"] == f"images/{t['id']}.png"
            letter = _letter(t)
            assert p["conversations"][1]["value"] == f"<answer>({letter}) {LETTERS[letter]}</answer>"
            assert t["conversations"][1]["value"].startswith("<think>")
            assert t["conversations"][1]["value"].endswith(
                f"</think> <answer>({letter}) {LETTERS[letter]}</answer>"
            )
    some = splits["eval"][""][:5] + splits["train"][""][-5:]
    assert all(
        (synthetic_dir / r["video"]).is_file() and (synthetic_dir / f"images/{r['id']}.png").is_file()
        for r in some
    )


def test_train_and_eval_are_disjoint_and_balanced(splits: dict) -> None:
    train_ids = {r["id"] for r in splits["train"][""]}
    eval_ids = {r["id"] for r in splits["eval"][""]}
    assert len(train_ids) == 2000 and len(eval_ids) == 200
    assert not train_ids & eval_ids
    counts = np.bincount([ord(_letter(r)) - ord("A") for r in splits["train"][""]], minlength=4)
    assert counts.min() >= 400  # ~500 each: no answer letter is a free guess


def test_asset_folder_stays_small(synthetic_dir: Path) -> None:
    size = sum(p.stat().st_size for p in synthetic_dir.rglob("*") if p.is_file())
    # 15 MB for the direction task, ~7 MB for the numerical split (2,200 clips of ~2.8 KB: x264's
    # header and the first frame are most of a clip's bytes).
    assert size < 23e6


def _square_centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) centroid of the bright square in a (3, H, W) frame; the background stays below ~120."""
    ys, xs = np.nonzero(frame.max(axis=0) > 160)
    assert len(xs) > 200  # ~24x24 px square, decoded
    return np.array([xs.mean(), ys.mean()])


def test_videos_decode_to_eight_56px_frames_and_the_answer_needs_time(
    meta: dict, splits: dict, synthetic_dir: Path
) -> None:
    video = VideoConfig(**meta["video"])
    records = splits["eval"][""][:6] + splits["train"][""][:4]
    messages = [
        {"role": "user", "content": [video.video_element(synthetic_dir / r["video"])]} for r in records
    ]
    _, videos, kwargs = fetch_vision(messages)
    unit = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    for record, (frames, metadata) in zip(records, videos, strict=True):
        assert tuple(frames.shape) == (8, 3, 56, 56)
        assert list(metadata["frames_indices"]) == list(range(8))
        arr = frames.numpy()
        shift = _square_centroid(arr[-1]) - _square_centroid(arr[0])
        along = shift @ np.array(unit[LETTERS[_letter(record)]])
        # The square crosses a 28-px token cell in the named direction and stays put across it.
        assert along > 20, (record["id"], shift)
        assert abs(shift @ np.array(unit[LETTERS[_letter(record)]][::-1])) < 3, (record["id"], shift)


def test_image_form_tiles_the_frames_in_time_order(meta: dict, splits: dict, synthetic_dir: Path) -> None:
    record = splits["eval"]["_image"][0]
    element = {"type": "image", "image": str(synthetic_dir / record["image"]), **meta["image"]}
    images, _, _ = fetch_vision([{"role": "user", "content": [element]}])
    tiles = np.asarray(images[0].convert("RGB")).transpose(2, 0, 1)
    assert tiles.shape == (3, 112, 224)
    first, last = tiles[:, :56, :56], tiles[:, 56:, 168:]
    shift = _square_centroid(last) - _square_centroid(first)
    unit = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[LETTERS[_letter(record)]]
    assert shift @ np.array(unit) > 20


# --- The numerical split: "How many times does the square bounce?" ------------------------------

NUMERICAL_FILES = {"train": "train_numerical", "eval": "eval_numerical"}
BOUNCE_HUMAN = "<video>\nHow many times does the square bounce?"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """scripts/make_synthetic_dataset.py as a module: the tests rebuild with the very code."""
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def numerical(synthetic_dir: Path) -> dict[str, dict[str, list[dict]]]:
    return {
        split: {v: _read(synthetic_dir / f"{stem}{v}.jsonl") for v in ("", "_no_think")}
        for split, stem in NUMERICAL_FILES.items()
    }


@pytest.fixture(scope="module")
def bounce_clips(generator: ModuleType, meta: dict, numerical: dict) -> dict[str, list]:
    counts = {split: len(numerical[split][""]) for split in NUMERICAL_FILES}
    return generator.sample_bounce_clips(meta["seed"], counts)


def _number(record: dict) -> int:
    return int(record["conversations"][1]["value"].split("<answer>")[1].removesuffix("</answer>"))


def test_numerical_rebuild_matches_the_committed_files(
    generator: ModuleType, bounce_clips: dict, synthetic_dir: Path, tmp_path: Path
) -> None:
    for split, stem in NUMERICAL_FILES.items():
        generator.write_bounce_split(tmp_path, stem, bounce_clips[split], videos=False)
        for variant in ("", "_no_think"):
            name = f"{stem}{variant}.jsonl"
            assert (tmp_path / name).read_bytes() == (synthetic_dir / name).read_bytes(), name
        # The clips' pixels are what the seed decides: x264's bytes for one clip were seen to
        # change with the clips encoded before it in the process, so the decoded frames are compared.
        for clip in (bounce_clips[split][0], bounce_clips[split][-1]):
            with av.open(str(synthetic_dir / "videos" / f"{clip.id}.mp4")) as container:
                decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
            diff = np.abs(decoded.astype(int) - generator.render(clip).astype(int))
            assert decoded.shape == (8, 64, 64, 3) and diff.mean() < 3, (clip.id, diff.mean())


def test_numerical_records_have_no_options_and_a_number(numerical: dict, synthetic_dir: Path) -> None:
    assert {split: len(rows[""]) for split, rows in numerical.items()} == {"train": 2000, "eval": 200}
    for rows in numerical.values():
        for think, plain in zip(rows[""], rows["_no_think"], strict=True):
            assert think["id"] == plain["id"] and think["id"].startswith("n_")
            assert set(think) == {"id", "video", "problem_type", "conversations"}
            assert think["problem_type"] == plain["problem_type"] == "numerical"
            assert think["video"] == plain["video"] == f"videos/{think['id']}.mp4"
            assert think["conversations"][0] == {"from": "human", "value": BOUNCE_HUMAN}
            assert plain["conversations"][0] == {"from": "human", "value": BOUNCE_HUMAN}
            n = _number(think)
            assert plain["conversations"][1]["value"] == f"<answer>{n}</answer>"
            assert think["conversations"][1]["value"].startswith("<think>The ")
            assert think["conversations"][1]["value"].endswith(f"</think> <answer>{n}</answer>")
            assert (synthetic_dir / think["video"]).is_file()
    train_ids = {r["id"] for r in numerical["train"][""]}
    assert not train_ids & {r["id"] for r in numerical["eval"][""]}


def test_numerical_answers_are_balanced(numerical: dict) -> None:
    for split, minimum in (("train", 666), ("eval", 66)):
        counts = np.bincount([_number(r) for r in numerical[split][""]], minlength=3)
        assert len(counts) == 3 and counts.min() >= minimum, (split, counts)


def test_numerical_answer_is_the_reversals_of_the_generated_positions(
    generator: ModuleType, bounce_clips: dict, numerical: dict
) -> None:
    assert generator.count_reversals([0, 18, 36, 36, 18, 0, 0, 0]) == 1
    assert generator.count_reversals([36, 18, 0, 18, 36, 18, 0, 0]) == 2
    assert generator.count_reversals([0, 0, 0, 18, 36, 36, 36, 36]) == 0
    for split in NUMERICAL_FILES:
        for clip, record in zip(bounce_clips[split], numerical[split][""], strict=True):
            xs = clip.xs()
            assert clip.id == record["id"] and len(xs) == 8
            assert generator.count_reversals(xs) == _number(record), clip.id
            # Each end the square rests at fills one 28-px token column of the 56-px decoded frame.
            assert min(xs) <= 4 and max(xs) >= 32, clip.id
            # One frame shows where the square is, never how often it turned.
    for count in (0, 1, 2):
        firsts = {c.xs()[0] <= 4 for c in bounce_clips["train"] if c.count == count}
        lasts = {c.xs()[-1] <= 4 for c in bounce_clips["train"] if c.count == count}
        assert firsts == lasts == {True, False}, count


def test_numerical_videos_show_the_bounces(meta: dict, numerical: dict, synthetic_dir: Path) -> None:
    video = VideoConfig(**meta["video"])
    records = numerical["eval"][""][:9]
    assert {_number(r) for r in records} == {0, 1, 2}
    messages = [
        {"role": "user", "content": [video.video_element(synthetic_dir / r["video"])]} for r in records
    ]
    _, videos, _ = fetch_vision(messages)
    for record, (frames, _) in zip(records, videos, strict=True):
        assert tuple(frames.shape) == (8, 3, 56, 56)
        xs = [_square_centroid(f)[0] for f in frames.numpy()]
        # A move is >= ~14 px decoded (half a leg); codec noise at rest is under a pixel.
        steps = [np.sign(b - a) for a, b in zip(xs, xs[1:], strict=False) if abs(b - a) > 5]
        reversals = sum(s != t for s, t in zip(steps, steps[1:], strict=False))
        assert reversals == _number(record), (record["id"], np.round(xs, 1))
