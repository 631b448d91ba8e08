"""Video and image decoding for the Qwen VL families, through qwen-vl-utils.

qwen-vl-utils owns frame sampling (``fps`` / ``max_frames``) and resizing (``min_pixels``,
``max_pixels``, ``total_pixels``) exactly as the Qwen team trains with; this module only turns its
knobs into a config, its failures into :class:`DataError` that name the file, and adds a cheap
header probe (duration, size) for dataset validation.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a container header says about a video, without decoding every frame."""

    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header and decode its first frame; raises DataError if it is missing or
    unreadable, so validation catches corrupt files before training does."""
    import av  # PyAV: a dependency of ours; fast header access for every container qwen reads

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"no video stream in {path}")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.base_rate or 0.0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = 0.0
            frames = stream.frames or (round(duration * fps) if fps else 0)
            first = next(container.decode(stream), None)
            if first is None:
                raise DataError(f"video has no decodable frame: {path}")
            return VideoInfo(
                duration_s=duration,
                fps=fps,
                num_frames=int(frames),
                width=first.width,
                height=first.height,
                codec=stream.codec_context.name,
            )
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as exc:
        raise DataError(f"cannot decode video {path}: {exc}") from exc


class DecodeCache:
    """Decoded, resized videos and images kept in memory (least recently used first out).

    A training run sees each clip once per epoch and GRPO runs many epochs over small datasets;
    decoding and resizing a clip can cost more than the tiny model's whole step. Entries are
    exactly what qwen-vl-utils returned, so cached and fresh decodes give identical tensors.
    """

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: str, value: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._bytes -= self._entries.pop(key)[1]
        self._entries[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, old_size) = self._entries.popitem(last=False)
            self._bytes -= old_size


def _vision_elements(messages: list[dict]) -> list[dict]:
    return [
        el
        for msg in messages
        for el in (msg["content"] if isinstance(msg.get("content"), list) else [])
        if isinstance(el, dict) and ("video" in el or "image" in el)
    ]


def _decode_element(element: dict, patch_size: int) -> tuple[str, Any]:
    """One image or video through qwen-vl-utils, as process_vision_info would decode it for a vision
    tower of ``patch_size`` px patches (sides resized to multiples of patch x merge)."""
    from qwen_vl_utils import fetch_image, fetch_video

    if "video" in element:
        video, _sample_fps = fetch_video(
            element, image_patch_size=patch_size, return_video_sample_fps=True, return_video_metadata=True
        )
        return "video", video
    return "image", fetch_image(element, image_patch_size=patch_size)


def vision_patch_size(processor: Any) -> int:
    """The vision tower's patch side in px, as the processor knows it (14 for Qwen2/2.5-VL, 16 for
    Qwen3-VL and Qwen3.5): qwen-vl-utils must resize frames to multiples of patch x merge, or the
    processor would resize them again and change the token count."""
    for part in ("video_processor", "image_processor"):
        size = getattr(getattr(processor, part, None), "patch_size", None)
        if size:
            return int(size)
    return 14


def _nbytes(kind: str, value: Any) -> int:
    if kind == "video":
        return int(value[0].numel() * value[0].element_size())
    width, height = value.size
    return width * height * 3


def fetch_vision(
    messages: list[dict], cache: DecodeCache | None = None, patch_size: int = 14
) -> tuple[list | None, list | None, dict[str, Any]]:
    """Decode every image and video in chat messages with qwen-vl-utils for a vision tower of
    ``patch_size`` px patches (:func:`vision_patch_size`); ``cache`` keeps the results for the next
    time the same element, with the same knobs, comes by.

    Each video comes with its metadata (the source fps and the indices of the sampled frames): the
    processors of families that write frame timestamps into the prompt (Qwen3-VL) read them from it.

    Returns ``(images, videos, video_kwargs)`` in the form the Qwen VL processors take:
    ``processor(text=..., images=images, videos=[v for v, _ in videos],
    video_metadata=[m for _, m in videos], do_resize=False, **video_kwargs)``.
    Raises DataError naming the file when one cannot be read.
    """
    images: list = []
    videos: list = []
    for element in _vision_elements(messages):
        key = json.dumps([element, patch_size], sort_keys=True, default=str)
        found = cache.get(key) if cache is not None else None
        if found is None:
            try:
                found = _decode_element(element, patch_size)
            except Exception as exc:  # qwen-vl-utils raises bare Exceptions from every backend
                path = element.get("video") or element.get("image")
                raise DataError(f"cannot decode {path}: {exc}") from exc
            if cache is not None:
                cache.put(key, found, _nbytes(*found))
        kind, value = found
        (videos if kind == "video" else images).append(value)
    # As process_vision_info(return_video_metadata=True): frames are already sampled.
    return images or None, videos or None, {"do_sample_frames": False}
