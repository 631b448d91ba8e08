"""How videos (and images) are sampled and resized before the vision tower: one config dataclass.

It lives in ``core`` because the run's config holds it; decoding itself is :mod:`trainer.data.video`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from trainer.core.config_types import check_field_types
from trainer.core.errors import ConfigError

# The pixel knobs are in pixels, not tokens: how many pixels one visual token covers is the model
# family's (trainer.model.families), and the family checks min_pixels against it at Check / Launch.
# The defaults are 16 and 128 tokens of Qwen2.5-VL's 28x28 px cells.
DEFAULT_MIN_PIXELS = 16 * 28 * 28
DEFAULT_MAX_PIXELS = 128 * 28 * 28


@dataclass(frozen=True)
class VideoConfig:
    """How videos (and images) are sampled and resized before the vision tower."""

    fps: float = field(
        default=2.0, metadata={"help": "Frames sampled per second of video (qwen-vl-utils `fps`)."}
    )
    max_frames: int = field(
        default=16,
        metadata={"help": "Upper bound on sampled frames per video; even (frames are merged in pairs)."},
    )
    min_pixels: int = field(
        default=DEFAULT_MIN_PIXELS,
        metadata={"help": "Smallest frame area in pixels after resizing (at least one visual token's cell)."},
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={"help": "Largest frame area in pixels after resizing; caps tokens per frame pair."},
    )
    total_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Budget of pixels over all sampled frames of one video, >= max_pixels (empty: no budget)."
        },
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.fps <= 0:
            raise ConfigError(f"fps must be > 0, got {self.fps}")
        if self.max_frames < 2:
            raise ConfigError(f"max_frames must be >= 2 (frames come in pairs), got {self.max_frames}")
        if self.max_frames % 2:
            # qwen-vl-utils would round it down without a word; say so instead.
            raise ConfigError(f"max_frames must be even (frames are merged in pairs), got {self.max_frames}")
        if self.min_pixels < 1:
            raise ConfigError(f"min_pixels must be >= 1, got {self.min_pixels}")
        if self.max_pixels < self.min_pixels:
            raise ConfigError(f"max_pixels ({self.max_pixels}) must be >= min_pixels ({self.min_pixels})")
        if self.total_pixels is not None and self.total_pixels < self.max_pixels:
            # A budget below one frame's cap makes max_pixels meaningless; lower max_pixels instead.
            raise ConfigError(
                f"total_pixels ({self.total_pixels}) must be >= max_pixels ({self.max_pixels}), "
                "or empty for no budget"
            )

    def video_element(self, path: str | os.PathLike) -> dict[str, Any]:
        """The ``{"type": "video", ...}`` element qwen-vl-utils reads, with these knobs."""
        element: dict[str, Any] = {
            "type": "video",
            "video": str(path),
            "fps": self.fps,
            "max_frames": self.max_frames,
            # qwen-vl-utils asks for at least 4 frames by default; short clips may have fewer.
            "min_frames": 2,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
        }
        if self.total_pixels is not None:
            element["total_pixels"] = self.total_pixels
        return element

    def image_element(self, path: str | os.PathLike) -> dict[str, Any]:
        return {
            "type": "image",
            "image": str(path),
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def for_token_size(self, from_pixels_per_token: int, to_pixels_per_token: int) -> VideoConfig:
        """The same knobs for a family whose visual token covers ``to_pixels_per_token`` pixels
        instead of ``from_pixels_per_token``: every pixel budget scaled by their ratio, so a frame
        gets as many visual tokens as before (3136 px = 2 x 2 tokens of 28 px -> 4096 px = 2 x 2
        tokens of 32 px). Sampling (fps, frames) is unchanged."""

        def scale(pixels: int) -> int:
            return round(pixels * to_pixels_per_token / from_pixels_per_token)

        total = None if self.total_pixels is None else scale(self.total_pixels)
        return replace(
            self, min_pixels=scale(self.min_pixels), max_pixels=scale(self.max_pixels), total_pixels=total
        )
