"""The ``report_to`` sinks read back: a real tiny run's TensorBoard events and offline W&B run hold
the run database's metrics, step by step (trainer/run/reporting.py).

TensorBoard keeps scalars as float32, so its values are the database's rounded to float32; W&B's
history keeps the float64 JSON value, so its values are the database's exactly.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.helpers.ci import import_or_skip
from tests.run.test_loop import tiny_config
from trainer.core import metrics_keys as mk
from trainer.run.loop import train
from trainer.rundb import RunStore


def database_series(tmp_path: Path, run_id: int) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of each of the six seed metrics, as the run database holds them."""
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    try:
        series = store.metrics_since(run_id)
        return {
            name: list(zip(series[name].steps, series[name].values, strict=True))
            for name in mk.SEED_GRPO_METRICS
        }
    finally:
        store.close()


def test_tensorboard_events_hold_the_run_database_metrics(tmp_path: Path) -> None:
    import_or_skip("tensorboard", "report_to=tensorboard needs it (in the dev extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    outcome = train(tiny_config(tmp_path, report_to="tensorboard"))
    want = database_series(tmp_path, outcome.run_id)
    assert all(len(points) == 2 for points in want.values()), want  # steps 1 and 2

    [events] = (tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert set(mk.SEED_GRPO_METRICS) <= set(accumulator.Tags()["scalars"])
    for name, points in want.items():
        got = [(event.step, event.value) for event in accumulator.Scalars(name)]
        assert got == [(step, float(np.float32(value))) for step, value in points], name


# The .wandb file is a LevelDB-style log of protobuf records (wandb-core writes it; wandb 0.31 ships
# no Python reader): a 7-byte file header, then 32 KiB blocks of chunks, each with a 7-byte header
# (crc32 of type + data, length, type) and a record whole (FULL) or in pieces (FIRST, MIDDLE, LAST).
WANDB_HEADER = struct.Struct("<4sHB")  # ":W&B", 0xBEE1, version 0
CHUNK_HEADER = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# Where wandb writes outside the run's dir (settings, caches; wandb-symon's logs go to
# $XDG_CACHE_HOME/wandb): into the test's folder, not ~.
WANDB_HOME_DIRS = (
    "WANDB_CONFIG_DIR",
    "WANDB_CACHE_DIR",
    "WANDB_DATA_DIR",
    "WANDB_ARTIFACT_DIR",
    "XDG_CACHE_HOME",
)


def wandb_records(path: Path) -> list:
    """Every record of an offline run's ``run-<id>.wandb`` file, as wandb's own protobuf messages."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert WANDB_HEADER.unpack_from(data) == (b":W&B", 0xBEE1, 0), data[:7]
    records, pieces, pos = [], [], WANDB_HEADER.size
    while pos + CHUNK_HEADER.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER.size:  # a block's tail too short for a header: padding
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        chunk = data[pos + CHUNK_HEADER.size : pos + CHUNK_HEADER.size + length]
        pos += CHUNK_HEADER.size + length
        assert crc == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), f"bad checksum at byte {pos}"
        assert (kind in (FULL, FIRST)) == (not pieces), f"chunk type {kind} out of order at byte {pos}"
        pieces.append(chunk)
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(b"".join(pieces))
            records.append(record)
            pieces = []
    return records


def wandb_history(records: list) -> dict[int, dict[str, float]]:
    """Each logged step's values by key, from the history records."""
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            history[record.history.step.num] = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items
            }
    return history


def test_offline_wandb_run_holds_the_run_database_metrics(tmp_path: Path, monkeypatch) -> None:
    import_or_skip("wandb", "report_to=wandb needs it (in the dev extra)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name in WANDB_HOME_DIRS:
        monkeypatch.setenv(name, str(tmp_path / "home"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    # No network: offline mode; should wandb call its server all the same, it would reach this socket.
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        outcome = train(tiny_config(tmp_path, report_to="wandb"))
        with pytest.raises(BlockingIOError):  # no connection is waiting
            server.accept()

    # The reporter's close ended wandb's service process (wandb-core) with the run.
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(started, timeout=30)
    assert alive == [], [p.cmdline() for p in alive]

    [run_file] = (tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    assert {r.run.display_name for r in records if r.WhichOneof("record_type") == "run"} == {"tiny"}
    history = wandb_history(records)
    assert sorted(history) == [1, 2]
    for name, points in database_series(tmp_path, outcome.run_id).items():
        assert [(step, history[step][name]) for step in sorted(history)] == points, name
