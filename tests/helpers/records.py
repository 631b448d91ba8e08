"""Real :class:`MCQRecord` s built by hand on the synthetic dataset's videos.

Tests that drive the model on a few questions use the record type the loaders produce (with its
own checks: the answer must be an option, one of video/image), not a look-alike.
"""

from __future__ import annotations

from pathlib import Path

from trainer.data.records import MCQRecord

OPTIONS = {"A": "left", "B": "right", "C": "up", "D": "down"}


def video_record(
    id: str,
    video: str | Path,
    question: str,
    options: dict[str, str] | None = None,
    *,
    answer: str = "A",
    mode: str = "think",
) -> MCQRecord:
    """One video question, as if read from line 1 of a file named after the test."""
    return MCQRecord(
        id=id,
        video=str(video),
        image=None,
        question=question,
        options=dict(OPTIONS if options is None else options),
        answer=answer,
        source="test",
        index=1,
        mode=mode,
    )
