"""The trainer refuses engine set-ups that would silently not shard or hang."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer.core.errors import ConfigError
from trainer.model.reference import check_dynamic_sampling, check_engine


def accelerator(kind: str, processes: int = 2) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=SimpleNamespace(name=kind), num_processes=processes)


@pytest.mark.parametrize(
    ("asked", "started", "refused"),
    [
        ("true", "MULTI_CPU", True),
        ("true", "NO", True),
        ("true", "FSDP", False),
        ("false", "MULTI_CPU", False),
    ],
)
def test_an_fsdp_launch_that_accelerate_did_not_start_as_fsdp_is_refused(
    monkeypatch: pytest.MonkeyPatch, asked: str, started: str, refused: bool
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", asked)
    if refused:
        with pytest.raises(ConfigError, match=f"accelerate started {started}"):
            check_engine(accelerator(started))
    else:
        check_engine(accelerator(started))


@pytest.mark.parametrize(
    ("kind", "processes", "refused"),
    [
        ("DEEPSPEED", 2, True),
        ("FSDP", 2, True),
        ("DEEPSPEED", 1, False),  # one process: nothing to wait on
        ("MULTI_CPU", 2, False),  # DDP syncs only the step's last backward
        ("MULTI_GPU", 2, False),
    ],
)
def test_dynamic_sampling_is_refused_where_every_forward_is_collective(
    kind: str, processes: int, refused: bool
) -> None:
    if refused:
        with pytest.raises(ConfigError, match="set dynamic_sampling: false"):
            check_dynamic_sampling(accelerator(kind, processes), True)
    else:
        check_dynamic_sampling(accelerator(kind, processes), True)
    check_dynamic_sampling(accelerator(kind, processes), False)
