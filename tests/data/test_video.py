"""Video decoding: each decoder path (PyAV's probe, every video reader qwen-vl-utils may pick) on
the synthetic clips and the real videos in ../shared/realdata/videos; what a bad file is reported
as; Qwen2.5-VL inputs on the real videos."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from trainer.core.errors import DataError
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.video import fetch_vision, probe_video, video_backend, video_backend_problem

realdata = pytest.mark.realdata

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


@realdata
def test_every_real_video_is_listed(real_videos: Path) -> None:
    assert sorted(p.name for p in real_videos.iterdir()) == sorted(REAL_VIDEOS)


@realdata
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
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(DataError) as info:
        probe_video(empty)
    assert str(info.value) == f"empty file (0 bytes): {empty}"


# ---- each decoder path on a real small clip ------------------------------------------------------

READERS = ("decord", "torchvision", "torchcodec")  # qwen-vl-utils' VIDEO_READER_BACKENDS


def _small(path: Path) -> dict[str, Any]:
    return VideoConfig(fps=2.0, max_frames=4, min_pixels=3136, max_pixels=3136).video_element(path)


@pytest.fixture(scope="module")
def clip(synthetic_dir: Path) -> Path:
    return sorted((synthetic_dir / "videos").glob("*.mp4"))[0]


def test_qwen_vl_utils_lists_the_readers_we_check() -> None:
    from qwen_vl_utils.vision_process import VIDEO_READER_BACKENDS

    assert sorted(VIDEO_READER_BACKENDS) == sorted(READERS)


@pytest.mark.parametrize("reader", READERS)
def test_each_video_reader_decodes_a_clip_or_is_named_unusable(reader: str, clip: Path) -> None:
    """A reader video_backend_problem passes must decode (the API it calls exists in the pinned
    version); one it refuses says why. torchvision 0.29 has no torchvision.io.read_video."""
    from qwen_vl_utils.vision_process import VIDEO_READER_BACKENDS

    problem = video_backend_problem(reader)
    if reader == "torchvision":
        import torchvision.io

        assert (problem is None) == hasattr(torchvision.io, "read_video")
    if problem is not None:
        assert reader in problem and "FORCE_QWENVL_VIDEO_READER=decord" in problem
        return
    frames, metadata, _fps = VIDEO_READER_BACKENDS[reader](_small(clip))
    assert frames.ndim == 4 and frames.shape[0] >= 2 and frames.shape[1] == 3
    assert metadata["video_backend"] == reader


def test_the_reader_qwen_vl_utils_picks_here_works(clip: Path) -> None:
    assert video_backend_problem(video_backend()) is None
    _, videos, _ = fetch_vision([{"role": "user", "content": [_small(clip)]}])
    ((frames, metadata),) = videos
    assert metadata["video_backend"] == video_backend()
    # The synthetic clip: 8 frames of 64 x 64 px at 8 fps; 2 fps of 1 s is 2 frames, resized to
    # 56 x 56 px (3136 px, 2 x 2 tokens of 28 px).
    assert tuple(frames.shape) == (2, 3, 56, 56)
    info = probe_video(clip)  # the other decoder path: PyAV's header probe agrees
    assert (info.num_frames, info.width, info.height) == (metadata["total_num_frames"], 64, 64)


@realdata
@pytest.mark.parametrize("name", ["clevrer_video_05282.mp4", "llamafactory_4.mp4", "llamafactory_2.avi"])
def test_the_reader_decodes_real_videos(real_videos: Path, name: str) -> None:
    _, videos, _ = fetch_vision([{"role": "user", "content": [_small(real_videos / name)]}])
    ((frames, metadata),) = videos
    assert frames.shape[0] == 4 and frames.shape[1] == 3
    assert metadata["total_num_frames"] > 4


@pytest.mark.parametrize(
    "content, says",
    [(b"", "empty file (0 bytes): {path}"), (b"\x00\x01garbage" * 100, "cannot decode video {path}: ")],
)
def test_a_bad_video_is_reported_for_what_it_is(tmp_path: Path, content: bytes, says: str) -> None:
    """Not the error of qwen-vl-utils' retry with torchvision.io.read_video, which torchvision
    >= 0.24 lacks: an empty file says so, a corrupt one gives FFmpeg's reason."""
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        fetch_vision([{"role": "user", "content": [_small(path)]}])
    message = str(info.value)
    assert message.startswith(says.format(path=path))
    assert "read_video" not in message and "torchvision" not in message
    if content:
        assert "Invalid data found when processing input" in message


def test_a_forced_reader_the_libraries_lack_is_named(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.io
    from qwen_vl_utils import vision_process

    if hasattr(torchvision.io, "read_video"):
        pytest.skip("this torchvision still reads video")
    monkeypatch.setattr(vision_process, "get_video_reader_backend", lambda: "torchvision")
    with pytest.raises(DataError) as info:
        fetch_vision([{"role": "user", "content": [_small(clip)]}])
    assert str(info.value).startswith(f"cannot decode video {clip}: torchvision ")
    assert "has no torchvision.io.read_video; set FORCE_QWENVL_VIDEO_READER=decord" in str(info.value)


@pytest.fixture(scope="module")
def processor(real_processor_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(real_processor_dir)


@realdata
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
