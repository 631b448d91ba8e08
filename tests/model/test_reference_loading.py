"""The trainer refuses FSDP's rank-0-only weight loading when it needs a separate reference model."""

from __future__ import annotations

import pytest

from trainer.core.errors import ConfigError
from trainer.run.loop import _check_reference_loading


@pytest.mark.parametrize(
    ("fsdp", "ram_efficient", "needs_reference", "refused"),
    [
        ("true", "true", True, True),
        ("true", "true", False, False),  # LoRA or grpo_beta 0: no separate copy to go stale
        ("true", "false", True, False),
        ("false", "true", True, False),
        (None, None, True, False),
    ],
)
def test_reference_loading_check(
    monkeypatch: pytest.MonkeyPatch,
    fsdp: str | None,
    ram_efficient: str | None,
    needs_reference: bool,
    refused: bool,
) -> None:
    for name, value in (("ACCELERATE_USE_FSDP", fsdp), ("FSDP_CPU_RAM_EFFICIENT_LOADING", ram_efficient)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if refused:
        with pytest.raises(ConfigError, match="fsdp_cpu_ram_efficient_loading: false"):
            _check_reference_loading(needs_reference)
    else:
        _check_reference_loading(needs_reference)
