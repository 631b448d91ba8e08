"""Video probing and Qwen2.5-VL inputs on the real videos in ../shared/realdata/videos."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from trainer.core.errors import DataError
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.video import probe_video

pytestmark = pytest.mark.realdata

# name -> (duration s, width, height, codec), from realdata/SOURCES.md.
REAL_VIDEOS = {
    "video_r1_example_video1.mp4": (22.03, 640, 360, "h264"),
    "v_TpB_zMG3XBA.mp4": (163.7, 398, 224, "mpeg4"),
    "v_rBMQFpHspmo.mp4": (144.7, 398, 224, "mpeg4"),
    "ytb_7nRmsEw7nsE.mp4": (44.77, 360, 640, "h264"),
    "clevrer_video_05282.mp4": (5.12, 480, 320, "h264"),
    "llamafactory_2.avi": (9.03, 320, 240, "h264"),
    "llamafactory_3.mp4": (6.09, 640, 360, "h264"),
    "llamafactory_4.mp4": (5.00, 224, 224, "h264"),
}
SMALL = VideoConfig(fps=1.0, max_frames=8, min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)


def test_every_real_video_is_listed(real_videos: Path) -> None:
    assert sorted(p.name for p in real_videos.iterdir()) == sorted(REAL_VIDEOS)


@pytest.mark.parametrize("name", sorted(REAL_VIDEOS))
def test_probe_real_video(real_videos: Path, name: str) -> None:
    duration, width, height, codec = REAL_VIDEOS[name]
    info = probe_video(real_videos / name)
    assert info.duration_s == pytest.approx(duration, rel=0.05)
    assert (info.width, info.height, info.codec) == (width, height, codec)


def test_probe_bad_files(tmp_path: Path) -> None:
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(DataError, match=f"cannot decode video {garbage}"):
        probe_video(garbage)
    with pytest.raises(DataError, match="video not found"):
        probe_video(tmp_path / "missing.mp4")


@pytest.fixture(scope="module")
def processor(real_processor_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(real_processor_dir)


@pytest.mark.parametrize("name", sorted(REAL_VIDEOS))
def test_video_pad_count_matches_grid(processor: Any, real_videos: Path, name: str) -> None:
    conversation = [
        {
            "role": "user",
            "content": [SMALL.video_element(real_videos / name), {"type": "text", "text": "What happens?"}],
        }
    ]
    batch = build_inputs(processor, [conversation])
    (grid,) = batch["video_grid_thw"].tolist()
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    n_pads = int((batch["input_ids"] == pad_id).sum())
    # 2x2 spatial merge: four 14-px patches become one token.
    assert n_pads == math.prod(grid) // 4
    t, h, w = grid
    assert 1 <= t <= SMALL.max_frames // 2  # two frames per temporal patch
    assert h * w * 14 * 14 <= SMALL.max_pixels
    assert batch["mm_token_type_ids"].shape == batch["input_ids"].shape
    assert int((batch["mm_token_type_ids"] == 2).sum()) == n_pads
