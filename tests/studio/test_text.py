"""Plain-text messages shown in Markdown keep every character: tags like ``</answer>`` included."""

from __future__ import annotations

from types import SimpleNamespace

from studio import text
from studio.context import StudioContext
from studio.tabs import monitor_views
from studio.tabs.train import report_status
from trainer.run.preflight import PreflightWarning
from trainer.rundb import Owner

# The pre-flight's two warnings a user read with their tags gone.
CUT = (
    "4 of 4 completions were cut at generation_max_length (3 tokens) before </answer>, so they score "
    "no format or accuracy reward"
)
MODE = "dataset_use is think mode (answers as <think>…</think> <answer>…</answer>) but the model wrote"


def test_literal_escapes_what_markdown_would_take_for_html() -> None:
    assert text.literal(CUT).endswith("before &lt;/answer&gt;, so they score no format or accuracy reward")
    assert text.literal(MODE) == (
        "dataset_use is think mode (answers as &lt;think&gt;…&lt;/think&gt; &lt;answer&gt;…&lt;/answer&gt;) "
        "but the model wrote"
    )
    assert text.literal("a & b") == "a &amp; b" and text.literal(3) == "3"


def test_preflight_warnings_keep_their_tags() -> None:
    report = SimpleNamespace(
        warnings=[PreflightWarning("generation_max_length", CUT), PreflightWarning("dataset_use", MODE)]
    )
    status = report_status(report)
    assert f"- **generation_max_length**: {text.literal(CUT)}" in status
    assert f"- **dataset_use**: {text.literal(MODE)}" in status
    assert "</answer>" not in status  # every tag escaped: none left for the renderer to drop


def test_the_monitor_status_keeps_the_tags_of_a_stop_reason(ctx: StudioContext) -> None:
    run = ctx.store.create_run("tags")
    ctx.store.claim_run(run.id)
    ctx.store.end_run(run.id, Owner.current(), "aborted", reason="stopped before </answer>")
    status = monitor_views.status_markdown(ctx.store.get_run(run.id), ended_early="cut at <answer>")
    assert "**Stopped:** stopped before &lt;/answer&gt;" in status
    assert "**Ended early:** cut at &lt;answer&gt;" in status
