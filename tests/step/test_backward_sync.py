"""Under DeepSpeed, only the last micro-batch of a step may let accelerate step the engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from trainer.run.loop import _backward


class FakeGradientState:
    def __init__(self) -> None:
        self.sync_gradients = True

    def _set_sync_gradients(self, value: bool) -> None:
        self.sync_gradients = value


class FakeAccelerator:
    """Records sync_gradients at each backward, as accelerate's DeepSpeed wrapper reads it."""

    def __init__(self, kind: str) -> None:
        self.distributed_type = SimpleNamespace(name=kind)
        self.gradient_state = FakeGradientState()
        self.seen: list[bool] = []

    def backward(self, loss: torch.Tensor) -> None:
        self.seen.append(self.gradient_state.sync_gradients)
        loss.backward()


@pytest.mark.parametrize(
    ("kind", "expected"), [("DEEPSPEED", [False, False, True]), ("MULTI_CPU", [True, True, True])]
)
def test_only_the_last_micro_batch_syncs_under_deepspeed(kind: str, expected: list[bool]) -> None:
    accelerator = FakeAccelerator(kind)
    weight = torch.ones((), requires_grad=True)
    for i in range(3):
        _backward(accelerator, weight * (i + 1), last=i == 2)
    assert accelerator.seen == expected
    assert accelerator.gradient_state.sync_gradients  # restored
    assert weight.grad.item() == 6.0  # all three accumulated


def test_sync_flag_is_restored_when_backward_fails() -> None:
    accelerator = FakeAccelerator("DEEPSPEED")
    with pytest.raises(RuntimeError):
        _backward(accelerator, torch.ones(()), last=False)  # no grad to compute
    assert accelerator.gradient_state.sync_gradients
