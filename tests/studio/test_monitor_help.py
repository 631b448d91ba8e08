"""The Monitor's help on its GRPO charts: one line per chart, saying exactly what is plotted."""

from __future__ import annotations

from studio.tabs.monitor import metric_help_markdown


def test_every_grpo_chart_is_described_in_the_panels_order() -> None:
    lines = metric_help_markdown().splitlines()
    assert [line.split("**")[1] for line in lines] == [
        "grpo/policy_seq_log_prob", "grpo/kl_div", "grpo/format_reward", "grpo/accuracy_reward",
        "grpo/total_reward", "grpo/advantage",
    ]  # fmt: skip
    # The same A as the rollout cards (trainer.step.grpo_step logs mean |A|, grpo_alpha not applied).
    assert lines[-1] == (
        "- **grpo/advantage**: mean |A| over the step's trained completions, where A is the "
        "group-relative advantage each rollout card shows (before grpo_alpha scales it in the loss). "
        "Its mean is 0 by construction; its size says how strong the learning signal is."
    )
