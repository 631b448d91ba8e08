"""Lists that stay live: each tab says how it re-reads its pickers and tables, and the app runs that
when the page loads and whenever the tab is selected.

A Gradio widget's initial value is computed once, when the app is built; a page reload gets that
value back, not what the database holds now. So no tab relies on it for anything that can change:
it returns a :class:`Refresh` and :func:`wire` attaches it to ``demo.load`` and ``Tab.select``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Refresh:
    """A handler that re-reads a tab's lists: ``fn(*inputs) -> outputs`` (Gradio components)."""

    fn: Callable[..., Any]
    inputs: Sequence[Any]
    outputs: Sequence[Any]


def wire(demo: Any, tab: Any, refresh: Refresh | None) -> None:
    """Run ``refresh`` on every page load and every time ``tab`` is selected."""
    if refresh is None:
        return
    for event in (demo.load, tab.select):
        event(refresh.fn, list(refresh.inputs), list(refresh.outputs), show_progress="hidden")


def poll_only_when_shown(tabs: Mapping[str, Any], timers: Mapping[str, Any]) -> None:
    """Each tab's gr.Timer ticks only while its tab is the one shown (``tabs``: id -> gr.Tab,
    ``timers``: id -> gr.Timer, created inactive): a hidden tab's timer costs every open page a
    Gradio event, and its main-thread bookkeeping, per tick."""
    import gradio as gr

    for shown_id, tab in tabs.items():
        for timer_id, timer in timers.items():
            tab.select(
                lambda on=(timer_id == shown_id): gr.Timer(active=on), None, timer, show_progress="hidden"
            )
