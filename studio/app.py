"""The studio's Gradio app: assembles the six tabs and launches the server. No logic lives here.

ctx = StudioContext(workspace)
demo = create_app(ctx)              # a gr.Blocks, not launched (tests build it like this)
launch_app(ctx, host="127.0.0.1", port=7860)
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from studio import live, text
from studio.context import StudioContext
from studio.supervisor import Supervisor
from studio.tabs.datasets import DEFAULT_LIMITS, UploadLimits, clean_stale_staging, create_datasets_tab
from studio.tabs.monitor import create_monitor_tab, plotly_bundle_dir
from studio.tabs.runs import create_runs_tab
from studio.tabs.train import create_train_tab
from trainer.core.errors import DataError
from trainer.core.paths import ASSETS_DIR
from trainer.data import list_datasets

logger = logging.getLogger(__name__)

CSS = """
.gradio-container { max-width: 1400px !important; margin: 0 auto; }
#studio-header h1 { margin-bottom: 0; }
#studio-header p { color: #52525b; margin-top: 4px; }
/* A table's column titles stay on one line ("duration" wrapped as "durati" / "on"). */
#runs-table th, #runs-table th * { white-space: nowrap; }
/* A table's help line (the Train tab's rewards) in the size and colour of the other fields' info. */
.vgrpo-field-info, .vgrpo-field-info p { font-size: var(--text-sm); color: var(--block-info-text-color); }
#monitor-log textarea { font-family: var(--font-mono); font-size: 0.85em; }
/* A single-choice dropdown draws its caret (an absolutely placed div.icon-wrap) over the right end of
   its text box: a long value (a model's path) ran under it. Keep the text clear of the caret. */
.secondary-wrap:has(> div.icon-wrap) > input { padding-right: calc(var(--size-5) + var(--size-3)); }
/* An error's folded details (studio.problems: <details><pre>) keep Gradio's unbroken <pre> lines, so a
   long hint (a Check's published estimate, a path) ran off the right edge. Wrap them, paths too. */
.md details > pre { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
"""

# The system's own fonts: nothing to download, so nothing that fails to load offline. With Gradio's
# default theme (Source Sans Pro, four font files fetched by the page; its SemiBold is a 5 KB subset)
# a user's offline page drew bold capitals like small caps.
SANS_FONTS = (
    "system-ui",
    "-apple-system",
    "Segoe UI",
    "Roboto",
    "Noto Sans",
    "Liberation Sans",
    "Arial",
    "sans-serif",
)
MONO_FONTS = (
    "ui-monospace",
    "SFMono-Regular",
    "Menlo",
    "Consolas",
    "Liberation Mono",
    "DejaVu Sans Mono",
    "monospace",
)


def studio_theme() -> Any:
    """Gradio's default theme with system font stacks (``SANS_FONTS``, ``MONO_FONTS``)."""
    import gradio as gr

    return gr.themes.Default(font=SANS_FONTS, font_mono=MONO_FONTS)


# Tabs written by another module owner: (title, module, factory name).
OPTIONAL_TABS = (
    (text.TAB_CHAT, "studio.tabs.chat", "create_chat_tab"),
    (text.TAB_EVALUATE, "studio.tabs.evaluate", "create_evaluate_tab"),
)


def _optional_module(module_name: str) -> Any:
    """The tab's module, or None while it does not exist in this checkout."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its imports is missing: a real error
        return None


def _refresh_of(ctx: StudioContext, module: Any, widgets: Any) -> live.Refresh | None:
    """A tab's list refresh: its ``"refresh"`` entry, or its module's ``refresh_lists(ctx, widgets)``."""
    if isinstance(widgets, dict) and isinstance(widgets.get("refresh"), live.Refresh):
        return widgets["refresh"]
    build = getattr(module, "refresh_lists", None)
    return build(ctx, widgets) if build is not None else None


def create_app(
    ctx: StudioContext, supervisor: Supervisor | None = None, limits: UploadLimits = DEFAULT_LIMITS
) -> Any:
    """Build the six tabs (Datasets, Train, Monitor, Runs, Chat, Evaluate) without launching."""
    import gradio as gr

    supervisor = supervisor or Supervisor(ctx)
    gr.set_static_paths([plotly_bundle_dir()])  # the Monitor's charts load plotly.min.js from it
    tabs: dict[str, Any] = {}  # tab id -> gr.Tab
    timers: dict[str, Any] = {}  # tab id -> the gr.Timer that polls for it
    with gr.Blocks(title=text.TITLE) as demo:
        gr.Markdown(f"# {text.TITLE}\n{text.SUBTITLE}", elem_id="studio-header")
        with gr.Tabs(elem_id="studio-tabs"):
            with gr.Tab(text.TAB_DATASETS, id="datasets", elem_id="tab-datasets") as tab:
                tabs["datasets"] = tab
                live.wire(demo, tab, create_datasets_tab(ctx, limits)["refresh"])
            with gr.Tab(text.TAB_TRAIN, id="train", elem_id="tab-train") as tab:
                tabs["train"] = tab
                train = create_train_tab(ctx, supervisor)
                live.wire(demo, tab, train.get("refresh"))
            with gr.Tab(text.TAB_MONITOR, id="monitor", elem_id="tab-monitor") as tab:
                tabs["monitor"] = tab
                monitor = create_monitor_tab(ctx, supervisor)
                live.wire(demo, tab, monitor["refresh"])
            with gr.Tab(text.TAB_RUNS, id="runs", elem_id="tab-runs") as tab:
                tabs["runs"] = tab
                live.wire(demo, tab, create_runs_tab(ctx, supervisor)["refresh"])
            for title, module_name, factory in OPTIONAL_TABS:
                with gr.Tab(title, id=title.lower(), elem_id=f"tab-{title.lower()}") as tab:
                    tabs[title.lower()] = tab
                    module = _optional_module(module_name)
                    if module is None:
                        gr.Markdown(text.PLACEHOLDER_TAB.format(module=module_name))
                    else:
                        widgets = getattr(module, factory)(ctx)
                        live.wire(demo, tab, _refresh_of(ctx, module, widgets))
                        if isinstance(widgets, dict) and widgets.get("timer") is not None:
                            timers[title.lower()] = widgets["timer"]
        live.poll_only_when_shown(tabs, timers)
        # A launch shows the new run in the Monitor (every other list re-reads when its tab is shown).
        train["launch_event"].then(monitor["reload_runs"], train["last_run"], monitor["run"])
    return demo


def allowed_paths(ctx: StudioContext) -> list[str]:
    """Folders whose files the browser may fetch (videos in previews and rollouts)."""
    paths = {str(ctx.workspace), str(ASSETS_DIR)}
    try:
        paths.update(str(Path(e.video_root)) for e in list_datasets(ctx.workspace))
    except DataError as exc:
        logger.warning("dataset registry unreadable, only the workspace is served: %s", exc)
    return sorted(paths)


def launch_app(
    ctx: StudioContext,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    prevent_thread_lock: bool = False,
    demo: Any = None,
) -> tuple[Any, str]:
    """Serve the studio; returns (the Blocks, its local URL). Blocks unless ``prevent_thread_lock``."""
    removed = clean_stale_staging(ctx.datasets_dir)
    if removed:
        logger.info("removed %d abandoned upload(s) from %s", len(removed), removed[0].parent)
    # A studio killed outright (SIGKILL, a crash) leaves the rows it had queued for a trainer or an
    # evaluation it never started, held by its dead process: end them now, not when a list is opened.
    # Trainers and evaluations it did start outlive it (their own sessions) and are left running.
    reaped = Supervisor(ctx).reap()
    if reaped:
        logger.warning("ended run(s) %s: their trainer or the studio that launched it is gone", reaped)
    # Read by the Train tab's reward upload (studio.reward_files.is_upload_allowed) at each upload.
    ctx.host, ctx.has_login = host, auth is not None
    demo = demo or create_app(ctx)
    _, local_url, _ = demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        prevent_thread_lock=prevent_thread_lock,
        allowed_paths=allowed_paths(ctx),
        css=CSS,
        theme=studio_theme(),
        footer_links=[],
        quiet=True,
        # The page refuses a larger file before sending it (the tab refuses a larger total after).
        max_file_size=DEFAULT_LIMITS.max_total_bytes,
    )
    return demo, local_url
