"""Video and image decoding for the Qwen VL families, through qwen-vl-utils.

qwen-vl-utils owns frame sampling (``fps`` / ``max_frames``) and resizing (``min_pixels``,
``max_pixels``, ``total_pixels``) exactly as the Qwen team trains with; this module only turns its
knobs into a config, its failures into :class:`DataError` that name the file, and adds a cheap
header probe (duration, size) for dataset validation.

Two decoders read a video: PyAV (:func:`probe_video`, validation's header probe) and the reader
qwen-vl-utils picks for frames (``FORCE_QWENVL_VIDEO_READER``, else torchcodec, decord, torchvision,
whichever it finds first). When that reader fails, qwen-vl-utils retries with
``torchvision.io.read_video``, which torchvision >= 0.24 no longer has: the error it raises then says
nothing about the video. :func:`fetch_vision` reports what is really wrong instead (an empty file,
PyAV's reason, or the first reader's own error), and :func:`video_backend_problem` says when the
reader qwen-vl-utils would use cannot work with the installed libraries.
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


def check_media_file(path: str | os.PathLike, kind: str = "video") -> Path:
    """``path`` when it is a file with bytes in it; DataError naming it when it is missing or empty
    (FFmpeg calls a 0-byte file "Invalid data found when processing input", which hides the cause)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{kind} not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"empty file (0 bytes): {path}")
    return path


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header and decode its first frame; raises DataError if it is missing, empty or
    unreadable, so validation catches corrupt files before training does."""
    import av  # PyAV: a dependency of ours; fast header access for every container qwen reads

    path = check_media_file(path)
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


def video_backend() -> str:
    """The video reader qwen-vl-utils uses: ``FORCE_QWENVL_VIDEO_READER`` when set (read when
    qwen-vl-utils is imported), else the first of torchcodec, decord and torchvision it finds."""
    from qwen_vl_utils.vision_process import get_video_reader_backend

    return get_video_reader_backend()


def video_backend_problem(backend: str) -> str | None:
    """Why qwen-vl-utils' ``backend`` cannot read videos with the libraries installed here (None:
    it can). Checks the API each reader calls, not just the package: torchvision >= 0.24 imports
    but has no ``torchvision.io.read_video``."""
    from qwen_vl_utils.vision_process import VIDEO_READER_BACKENDS

    fix = "set FORCE_QWENVL_VIDEO_READER=decord (pip install decord) or install torchcodec"
    if backend not in VIDEO_READER_BACKENDS:
        known = ", ".join(VIDEO_READER_BACKENDS)
        return f"FORCE_QWENVL_VIDEO_READER={backend!r} is not one of qwen-vl-utils' video readers ({known})"
    try:
        if backend == "torchvision":
            import torchvision
            import torchvision.io

            if not hasattr(torchvision.io, "read_video"):
                return f"torchvision {torchvision.__version__} has no torchvision.io.read_video; {fix}"
        elif backend == "decord":
            import decord

            decord.VideoReader  # noqa: B018 - the class qwen-vl-utils calls
        else:
            from torchcodec.decoders import VideoDecoder  # noqa: F401 - what qwen-vl-utils calls
    except (ImportError, OSError, RuntimeError, AttributeError) as exc:
        # torchcodec raises RuntimeError/OSError when it cannot load FFmpeg's libraries.
        return f"qwen-vl-utils' {backend} video reader cannot load ({exc}); {fix}"
    return None


def _video_failure(path: str, exc: BaseException) -> DataError:
    """What went wrong when qwen-vl-utils could not decode the video at ``path``, naming it."""
    backend = video_backend()
    problem = video_backend_problem(backend)
    if problem is not None:
        return DataError(f"cannot decode video {path}: {problem}")
    try:
        probe_video(path)
    except DataError as probed:  # PyAV says why (empty, invalid data, no video stream)
        return probed
    # qwen-vl-utils retried with torchvision.io.read_video (gone since torchvision 0.24); the error
    # that retry raised is chained onto the first reader's, which is the one that says something.
    first = exc.__context__ if exc.__context__ is not None else exc
    return DataError(f"cannot decode video {path} with {backend}: {first}")


def _decode_element(element: dict, patch_size: int) -> tuple[str, Any]:
    """One image or video through qwen-vl-utils, as process_vision_info would decode it for a vision
    tower of ``patch_size`` px patches (sides resized to multiples of patch x merge). Raises
    DataError naming the file."""
    from qwen_vl_utils import fetch_image, fetch_video

    kind = "video" if "video" in element else "image"
    source = element[kind]
    is_local = isinstance(source, str | os.PathLike) and "://" not in str(source)
    if is_local:
        check_media_file(source, kind)
    try:
        if kind == "video":
            video, _sample_fps = fetch_video(
                element, image_patch_size=patch_size, return_video_sample_fps=True, return_video_metadata=True
            )
            return "video", video
        return "image", fetch_image(element, image_patch_size=patch_size)
    except Exception as exc:  # qwen-vl-utils raises bare Exceptions from every backend
        if kind == "video" and is_local:
            raise _video_failure(str(source), exc) from exc
        raise DataError(f"cannot decode {kind} {source}: {exc}") from exc


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
            found = _decode_element(element, patch_size)
            if cache is not None:
                cache.put(key, found, _nbytes(*found))
        kind, value = found
        (videos if kind == "video" else images).append(value)
    # As process_vision_info(return_video_metadata=True): frames are already sampled.
    return images or None, videos or None, {"do_sample_frames": False}
