"""Fixtures for the dataset tests: tiny media files made on the fly and an annotation writer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TINY_FRAMES = 16
TINY_FPS = 8  # 16 frames at 8 fps: a 2.00 s clip


def write_tiny_video(path: Path, frames: int = TINY_FRAMES, fps: int = TINY_FPS) -> Path:
    """A 64x64 mpeg4 clip of a white bar moving right (valid, decodable, ~5 KB)."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.zeros((64, 64, 3), np.uint8)
            img[:, (i * 4) % 56 : (i * 4) % 56 + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def tiny_video_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_video(tmp_path_factory.mktemp("media") / "tiny.mp4").read_bytes()


@pytest.fixture
def put_video(tmp_path: Path, tiny_video_bytes: bytes) -> Callable[[str], Path]:
    """Copy the tiny clip to ``tmp_path / rel`` and return its path."""

    def put(rel: str) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_video_bytes)
        return path

    return put


@pytest.fixture
def put_image(tmp_path: Path) -> Callable[[str], Path]:
    from PIL import Image

    def put(rel: str) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
        return path

    return put


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows that are strings are written verbatim (to plant bad JSON); others as JSON."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _write_json(path: Path, rows: list[Any]) -> Path:
    path.write_text(json.dumps(rows, indent=2))
    return path


def _seed_record(
    video: str = "videos/a.mp4",
    letter: str = "B",
    think: bool = True,
    options: str = "(A) left\n(B) right\n(C) up\n(D) down",
    rid: str | None = None,
) -> dict[str, Any]:
    """A record in the project's seed conversation format."""
    answer = f"<answer>({letter}) right</answer>"
    record: dict[str, Any] = {
        "video": video,
        "conversations": [
            {"from": "human", "value": f"<video>\nWhich way does the square move?\nOptions:\n{options}"},
            {"from": "gpt", "value": f"<think>It goes right.</think> {answer}" if think else answer},
        ],
    }
    if rid is not None:
        record["id"] = rid
    return record


# Helpers are handed out as fixtures (not imported) so the tests work in any pytest import mode.
@pytest.fixture
def write_jsonl() -> Callable[[Path, list[Any]], Path]:
    return _write_jsonl


@pytest.fixture
def write_json() -> Callable[[Path, list[Any]], Path]:
    return _write_json


@pytest.fixture
def seed_record() -> Callable[..., dict[str, Any]]:
    return _seed_record
