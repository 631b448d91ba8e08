"""A run's history over its attempts as every view reports it: how long it trained, and what each
attempt resumed from. Pure functions of the store's dataclasses (no session, no I/O).

One duration everywhere (the Runs table, ``vgrpo runs show``, the Monitor): the sum of the attempts'
durations, the time trainer processes actually held the run. A running attempt counts up to now; the
idle time between one attempt's end and the next one's claim does not count. Before this, the Runs
table showed the last attempt only, ``runs show`` the sum, and the Monitor the time since the last
claim plus, after an end, nothing of the earlier attempts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from trainer.rundb.entities import RESUMED_EVENT, Attempt, Event, Run


def run_duration_s(run: Run, attempts: Sequence[Attempt], now: float | None = None) -> float | None:
    """Seconds ``run`` has trained: the sum of its ``attempts``' durations, a running one counted up
    to ``now`` (``time.time()`` by default). None when it never started (queued, or a registered
    model). A run from before attempts were recorded (revision 0003) has none: its row's own span."""
    now = time.time() if now is None else now
    if attempts:
        return sum(max(0.0, (now if a.ended_at is None else a.ended_at) - a.started_at) for a in attempts)
    if run.started_at is None:
        return None
    return max(0.0, (now if run.ended_at is None else run.ended_at) - run.started_at)


def resumed_checkpoints(attempts: Sequence[Attempt], events: Sequence[Event]) -> dict[int, str]:
    """``{attempt number: checkpoint folder}`` for the attempts that resumed from a checkpoint.

    Read from the trainer's ``resumed`` events ("from <folder>"): each is written with the attempt's
    lease right after its claim, so it belongs to the newest attempt started before it. An attempt
    without one started from scratch."""
    ordered = sorted(attempts, key=lambda a: a.started_at)
    out: dict[int, str] = {}
    for event in events:
        if event.kind != RESUMED_EVENT:
            continue
        owner = next((a for a in reversed(ordered) if a.started_at <= event.time), None)
        if owner is not None:
            out[owner.number] = event.message.removeprefix("from ").strip()
    return out
