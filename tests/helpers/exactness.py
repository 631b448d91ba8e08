"""Holding two computation paths that must agree against each other (shared prefix against per
sample, sharded against full): gradients compared tensor by tensor, and a record of which path
really ran.

Why per tensor and relative: one ``assert_close`` with an absolute tolerance over all parameters
passes a tensor whose gradients are all far below the tolerance, however wrong they are; the error
of each tensor measured against its own size cannot hide that way.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import torch

# The denominator's floor: a tensor whose reference gradient is exactly zero must be (almost)
# exactly zero on the other path too.
TINY = 1e-12


def relative_error(got: torch.Tensor, want: torch.Tensor, tiny: float = TINY) -> float:
    """||got - want|| / max(||want||, tiny), in float64 (Frobenius norms over the whole tensor)."""
    got, want = got.detach().double(), want.detach().double()
    return float((got - want).norm() / max(float(want.norm()), tiny))


def relative_errors(
    got: Mapping[str, torch.Tensor | None], want: Mapping[str, torch.Tensor | None], tiny: float = TINY
) -> dict[str, float]:
    """:func:`relative_error` of every tensor, by name. Both None (no gradient reached it on either
    path): 0. One None: the other's error against zeros (inf when that one has any gradient)."""
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))
    errors: dict[str, float] = {}
    for name, reference in want.items():
        other = got[name]
        if reference is None and other is None:
            errors[name] = 0.0
        elif reference is None or other is None:
            present = reference if other is None else other
            errors[name] = 0.0 if not present.abs().sum() else float("inf")
        else:
            errors[name] = relative_error(other, reference, tiny)
    return errors


def assert_relative_errors_within(errors: Mapping[str, float], rel_tol: float) -> None:
    """Every tensor's relative error is at most ``rel_tol``; the message names each one that is not,
    worst first."""
    assert errors, "no tensors compared"
    over = sorted(((e, n) for n, e in errors.items() if not e <= rel_tol), reverse=True)
    assert not over, f"relative error above {rel_tol:g}: " + ", ".join(f"{n} {e:.2e}" for e, n in over)


def assert_tensors_close(
    got: Mapping[str, torch.Tensor | None], want: Mapping[str, torch.Tensor | None], rel_tol: float
) -> dict[str, float]:
    """Each tensor of ``got`` is within ``rel_tol`` of ``want``'s (relative error, per tensor);
    returns the errors by name."""
    errors = relative_errors(got, want)
    assert_relative_errors_within(errors, rel_tol)
    return errors


def _shared_prefix_functions() -> list[tuple[Any, str]]:
    from trainer.model import prefix
    from trainer.rollout import hf

    return [
        (prefix, "shared_prefix_logits"),  # training / log-prob forward, prompt once per group
        (hf, "decode_shared_prefix"),  # sampling: the lean decode loop on one prefill per prompt
        (hf, "generate_from_shared_prefix"),  # sampling: generate continuing the shared prefill
    ]


@contextmanager
def shared_prefix_calls() -> Iterator[Counter[str]]:
    """Count, by function name, the calls of the shared-prefix functions made inside the block (they
    still run). The library falls back to the per-sample path with no more than a logged warning
    (``trainer.model.prefix.use_shared_prefix``), where both paths would trivially agree; this shows
    which one ran, without a test-only switch in the library."""
    calls: Counter[str] = Counter()

    def counting(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    with ExitStack() as stack:
        for owner, name in _shared_prefix_functions():
            stack.enter_context(mock.patch.object(owner, name, counting(name, getattr(owner, name))))
        yield calls
