"""The embedded synthetic video MCQ dataset (assets/synthetic_motion): files, splits, decoding, and
that the answer is in the motion (first vs last frame), computed from pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.core.video_config import VideoConfig
from trainer.data.video import fetch_vision

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
    assert size < 16e6


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
