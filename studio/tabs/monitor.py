"""Monitor tab: one run's status, progress and ETA, live metric plots, rollouts, log; Abort and Resume.

The live part (progress bar and charts) is one gr.HTML running ``studio/static/monitor_charts.js``:
the page polls the component's server function (:meth:`MonitorHandlers.poll`, a plain request, not a
Gradio event: an event with outputs costs the page ~0.1 s of status bookkeeping per tick) every few
seconds, and only while it matters: while the Monitor is on screen and its run is queued or running.
A poll says what the page holds and gets only the new points (``studio.monitor_charts`` deltas,
appended in the page) and the progress line. The rest (status, log, rollout steps, the picker's
labels) is a Gradio event the page fires only when the poll's ``news`` changed, and the log is read
only while its section is open. Everything shown is read from the run DB and the run's log file,
so a reload or a studio restart shows the same thing.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import choices, monitor_charts, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.supervisor import Supervisor
from studio.tabs.monitor_views import (
    abort_message,
    completions_html,
    ended_early_message,
    progress_html,
    question_html,
    resume_message,
    run_eta_s,
    status_markdown,
    time_budget_s,
    total_steps,
    train_s,
)
from trainer.core import metrics_keys as mk
from trainer.core.errors import StudioError
from trainer.rundb import Rollout, Run, run_duration_s

# How often an open Monitor asks for news. Each ask redraws the charts on screen (~20 ms of the page's
# main thread per chart on 2 cores): at 3 s a watching page kept its main thread ~15 % busy, at 5 s
# under 10 %; Refresh asks at once.
REFRESH_S = 5.0
LOG_LINES = 60  # the log's tail, shown in a box of LOG_BOX_LINES scrolled to its newest line
LOG_BOX_LINES = 20
# A new rollout step updates the rollouts section (three Gradio events and a video) at most this
# often: a fast run samples rollouts every few seconds, and each update costs the page ~0.3 s.
ROLLOUT_NEWS_S = 15.0
ETA_STEPS = 20  # the ETA is steps left x the median step time of the last ETA_STEPS steps
CHARTS_JS = (Path(__file__).resolve().parent.parent / "static" / "monitor_charts.js").read_text()
LIVE_TEMPLATE = '<div class="vgrpo-progress" id="monitor-progress"></div><div class="vgrpo-charts"></div>'
CHARTS_CSS = """
.vgrpo-progress { margin: 4px 0 8px; }
.vgrpo-grid { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 4px 12px; }
/* A chart's redraw lays out and paints only itself, not the page around it. */
.vgrpo-chart { height: 240px; contain: strict; }
.vgrpo-panel-title { margin: 18px 0 4px 4px; font-size: 1.15em; font-weight: 600; }
.vgrpo-waiting { color: #71717a; margin-left: 4px; }
.vgrpo-waiting:empty { display: none; }
"""


def empty_state(run_id: int | None = None) -> dict[str, Any]:
    """Per-session record of what the page shows besides the charts: the texts last sent (unchanged
    ones are not sent again), the rollout steps listed, the status the picker's labels carry."""
    return {
        "run_id": run_id,
        "shown": {},  # output name -> the text last sent
        "rollout_steps": None,
        "status": None,
        "ended_early": None,  # the run's ENDED_EARLY_EVENT message, read when its status changes
    }


def initial_view() -> dict[str, bool]:
    """Which of the page's sections are open (written by their expand / collapse events)."""
    return {"log_open": False}


def live_value(run_id: int | None, nonce: int) -> str:
    """The live component's value: the run to show; a new ``nonce`` makes the page poll at once."""
    return json.dumps({"run_id": run_id, "nonce": nonce})


def _if_changed(st: dict, name: str, value: str) -> Any:
    """``value``, or gr.skip() when the page already shows it (a re-sent text re-renders its widget)."""
    import gradio as gr

    if st["shown"].get(name) == value:
        return gr.skip()
    st["shown"][name] = value
    return value


@dataclass(frozen=True)
class MonitorWidgets:
    """The widgets the tab's events read or write."""

    state: Any  # gr.State: the session's mirror, see empty_state
    view: Any  # gr.State: what the page shows, see initial_view
    run_pick: Any
    refresh: Any
    abort: Any
    resume: Any
    action: Any
    status: Any
    smoothing: Any
    live: Any  # gr.HTML running studio/static/monitor_charts.js: the progress bar and the charts
    rollouts: Any  # the rollouts section (an accordion)
    step_pick: Any
    prompt_pick: Any
    rollout_note: Any
    video: Any
    question: Any
    completions: Any
    rollouts_state: Any  # gr.State: the rollouts of the picked step
    log_section: Any
    log: Any


class MonitorHandlers:
    """What the page's polls, the pickers and the buttons do; a failure becomes the status or action line."""

    def __init__(self, ctx: StudioContext, supervisor: Supervisor) -> None:
        self.ctx = ctx
        self.supervisor = supervisor
        self._nonces = itertools.count(1)

    def poll(self, request: dict[str, Any]) -> dict[str, Any]:
        """The live component's server function: what a page holding ``request`` (see
        ``studio.monitor_charts``; plus ``log_open``) lacks of its run.

        -> ``{"run_id", "attempt", "active", "progress" (html), "delta" (or None), "news",
        "rollouts"}``; ``news`` changes when the status or (while the log is open) the log do, and
        the page then fires the component's change event (:meth:`on_news`); ``rollouts`` is the
        newest step with rollouts, which fires it at most every ROLLOUT_NEWS_S seconds. A run that cannot
        be read answers ``{"run_id", "error"}`` (on_news shows the error). Stateless: nothing is kept
        per viewer.
        """
        run_id = int(request["run_id"])
        try:
            self.supervisor.reap([run_id])  # reads never write: a dead trainer's run is ended here
            run = self.ctx.store.get_run(run_id)
        except StudioError as exc:
            return {"run_id": run_id, "error": str(exc)}
        held_step = request.get("last_step")
        # A page holding another attempt's points gets everything: a resume re-logs the steps
        # after its checkpoint with new values.
        reset = held_step is None or request.get("attempt") != run.attempt
        after = None if reset else int(held_step) - 1
        fetched = self.ctx.store.metrics_since(run_id, after_step=after)
        delta = monitor_charts.chart_delta(fetched, set(request.get("metrics") or ()), reset)
        last = max((s.steps[-1] for s in fetched.values() if s.steps), default=None if reset else held_step)
        total = total_steps(self.supervisor, run_id)
        if run.status == "finished" and last:
            # A run may finish early (max_train_seconds, early_stop_accuracy): what it did is the whole run.
            total = last
        news = [run.status, run.attempt, run.pid, run.end_reason, run.error]
        if request.get("log_open"):
            news.append(self._log_size(run))
        rollouts = self.ctx.store.rollout_steps(run_id)[-1:]
        return {
            "run_id": run_id,
            "attempt": run.attempt,
            "active": run.is_active,
            "progress": self._progress_html(run, last, total),
            "delta": delta,
            "news": json.dumps(news),
            "rollouts": rollouts[0] if rollouts else None,
        }

    def _progress_html(self, run: Run, last: int | None, total: int | None) -> str:
        """The progress line: the steps and, with a time budget (max_train_seconds), the share of it
        trained, whichever is further along; the ETA while the run is active (0 once it is not)."""
        budget_s = time_budget_s(self.supervisor, run.id)
        series = {}
        if last is not None:
            names = [mk.TIME_STEP_S, mk.TIME_TRAIN_S, mk.TOTAL_REWARD]
            recent = self.ctx.store.metrics_since(run.id, after_step=last - ETA_STEPS, names=names)
            series = {name: (list(s.steps), list(s.values), list(s.wall_times)) for name, s in recent.items()}
        now = time.time() if run.is_active else None  # a live run has trained since its last point
        eta = run_eta_s(series, total, budget_s, now) if run.is_active else 0.0
        trained = run_duration_s(run, self.ctx.store.attempts(run.id))  # its attempts, not the pauses
        return progress_html(last, total, eta, trained, budget_s, train_s(series, now))

    def _log_size(self, run: Run) -> int:
        path = self.supervisor.log_path(run)
        try:
            return path.stat().st_size if path is not None else 0
        except OSError:
            return 0

    def on_news(self, run_id: int | None, st: dict, view: dict, shown_step: int | None = None) -> tuple:
        """-> state, status, log, rollout steps, run picker; each skipped unless it changed.
        A new rollout step is picked only when the page showed the newest one (or none): someone
        reading an older step's rollouts is not moved."""
        import gradio as gr

        skip = gr.skip()
        if run_id is None:
            st = empty_state()
            return (st, _if_changed(st, "status", text.NO_RUN), "", skip, skip)
        if st.get("run_id") != run_id:
            st = empty_state(run_id)
        else:
            st = {**st, "shown": dict(st["shown"])}
        try:
            self.supervisor.reap([run_id])
            run = self.ctx.store.get_run(run_id)
        except StudioError as exc:
            st = empty_state()
            return (st, problems.error_markdown(exc), "", skip, skip)
        picker_update: Any = skip
        if run.status != st["status"]:
            # The run picker's labels carry each run's status: relabel them when this run's changes
            # (choices only, so the picked value and its change event are left alone).
            st["status"] = run.status
            st["ended_early"] = ended_early_message(self.ctx, run)
            picker_update = gr.Dropdown(choices=choices.run_choices(self.ctx.store.list_runs()))
        steps = self.ctx.store.rollout_steps(run_id)
        steps_update: Any = skip
        if steps != st["rollout_steps"]:
            # Someone reading an older step of this run keeps it; otherwise (the newest step shown,
            # none, or another run's) the newest is picked. The value is always one of the choices.
            previous = st["rollout_steps"]
            keep = bool(previous) and shown_step in steps and shown_step != previous[-1]
            st["rollout_steps"] = steps
            steps_update = gr.Dropdown(
                choices=steps, value=shown_step if keep else (steps[-1] if steps else None)
            )
        log = (
            _if_changed(st, "log", self.supervisor.log_tail(run, LOG_LINES)) if view.get("log_open") else skip
        )
        status = status_markdown(run, st["ended_early"], self.supervisor.cluster_note(run))
        return (
            st,
            _if_changed(st, "status", status),
            log,
            steps_update,
            picker_update,
        )

    def show_run(self, run_id: int | None) -> str:
        """The live component's value for ``run_id``, with a new nonce: the page polls at once."""
        return live_value(run_id, next(self._nonces))

    def refresh(self, run_id: int | None) -> tuple[Any, str]:
        """The Refresh button: the run picker re-read (runs launched elsewhere appear) and a new
        live value (the page polls, the change event reads the status and log again)."""
        import gradio as gr

        items, value = self._runs_and_pick(run_id)
        return gr.Dropdown(choices=items, value=value), self.show_run(value)

    def on_step(self, run_id: int | None, step: int | None) -> tuple:
        """-> the step's rollouts, the prompt picker, the note, and the first prompt's video,
        question and completions (one event: the prompt picker's own event is for the user's picks)."""
        import gradio as gr

        if run_id is None or step is None:
            return [], gr.Dropdown(choices=[], value=None), text.NO_ROLLOUTS, None, "", ""
        items = self.ctx.store.rollouts(run_id, int(step))
        prompts = list(dict.fromkeys(r.prompt_id for r in items))
        first = prompts[0] if prompts else None
        return items, gr.Dropdown(choices=prompts, value=first), "", *self.on_prompt(items, first)

    def on_prompt(self, items: list[Rollout], prompt_id: str | None) -> tuple:
        group = [r for r in items if r.prompt_id == prompt_id]
        if not group:
            return None, "", ""
        return group[0].video_path, question_html(group[0]), completions_html(group)

    def on_abort(self, run_id: int | None) -> str:
        if run_id is None:
            return text.NO_RUN
        try:
            pid = self.supervisor.abort(run_id)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc)
        return abort_message(self.ctx.store.get_run(run_id), pid, self.supervisor.grace_s)

    def on_resume(self, run_id: int | None) -> tuple[str, dict]:
        if run_id is None:
            return text.NO_RUN, empty_state()
        try:
            launched = self.supervisor.resume(run_id)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc), empty_state(run_id)
        return resume_message(launched.run, launched.pid), empty_state(run_id)

    def _runs_and_pick(self, current: int | None) -> tuple[list[tuple[str, int]], int | None]:
        """The run picker's choices, and its value: ``current`` while it exists, else the newest."""
        items = choices.run_choices(self.supervisor.runs())
        ids = [v for _, v in items]
        return items, current if current in ids else (ids[0] if ids else None)

    def reload_runs(self, current: int | None) -> Any:
        import gradio as gr

        items, value = self._runs_and_pick(current)
        return gr.Dropdown(choices=items, value=value)


def _run_bar() -> tuple[Any, Any, Any, Any]:
    """``(run picker, refresh, abort, resume)`` in one row."""
    import gradio as gr

    with gr.Row(equal_height=False):
        run_pick = gr.Dropdown([], label=text.RUN_PICK_LABEL, scale=4, elem_id="monitor-run")
        with gr.Column(scale=3):
            with gr.Row():
                refresh = gr.Button(text.REFRESH_BUTTON, elem_id="monitor-refresh")
                abort = gr.Button(text.ABORT_BUTTON, variant="stop", elem_id="monitor-abort")
                resume = gr.Button(text.RESUME_BUTTON, elem_id="monitor-resume")
    return run_pick, refresh, abort, resume


def _rollouts_section() -> tuple[Any, ...]:
    """One step's rollouts, prompt by prompt:
    ``(section, step picker, prompt picker, note, video, question, completions)``."""
    import gradio as gr

    with gr.Accordion(text.ROLLOUT_HEADING.lstrip("# "), open=True, elem_id="monitor-rollouts") as section:
        with gr.Row():
            step_pick = gr.Dropdown([], label=text.ROLLOUT_STEP_LABEL, elem_id="monitor-rollout-step")
            prompt_pick = gr.Dropdown([], label=text.ROLLOUT_PROMPT_LABEL, elem_id="monitor-rollout-prompt")
        rollout_note = gr.Markdown()
        with gr.Row(equal_height=False):
            video = gr.Video(
                label="Video", height=240, interactive=False, scale=2, elem_id="monitor-rollout-video"
            )
            question = gr.HTML(elem_id="monitor-rollout-question")
        completions = gr.HTML(elem_id="monitor-rollout-completions")
    return section, step_pick, prompt_pick, rollout_note, video, question, completions


def _live_widget(smoothing: float, handlers: MonitorHandlers) -> Any:
    """The progress bar and the live charts: Plotly from the plotly package's own bundle (served as a
    static file, so the page works offline), the points held and appended in the page, the server
    asked through ``handlers.poll``."""
    import gradio as gr

    bundle = Path(plotly_bundle_dir()) / "plotly.min.js"

    def poll(request: dict[str, Any]) -> dict[str, Any]:  # gradio marks the function: not a bound method
        return handlers.poll(request)

    return gr.HTML(
        live_value(None, 0),
        html_template=LIVE_TEMPLATE,
        css_template=CHARTS_CSS,
        js_on_load=CHARTS_JS,
        head=f'<script src="/gradio_api/file={bundle}"></script>',
        server_functions=[poll],
        elem_id="monitor-live",
        smoothing=smoothing,
        refresh_ms=int(REFRESH_S * 1000),
        rollout_news_ms=int(ROLLOUT_NEWS_S * 1000),
        empty_progress=progress_html(None, None, None),
    )


def plotly_bundle_dir() -> str:
    """The folder of the plotly package's ``plotly.min.js`` (app.py serves it as a static path)."""
    import plotly

    return str(Path(plotly.__file__).resolve().parent / "package_data")


def metric_help_markdown() -> str:
    """The GRPO panel's charts, each with what it plots (``text.METRIC_HELP``), in the panel's order."""
    return "\n".join(f"- **{name}**: {text.METRIC_HELP[name]}" for name in mk.SEED_GRPO_METRICS)


def build_layout(handlers: MonitorHandlers) -> MonitorWidgets:
    """The tab's widgets: run bar, status, smoothing, progress and metric plots, rollouts, log."""
    import gradio as gr

    gr.Markdown(text.INTRO_MONITOR)
    state = gr.State(empty_state())
    view = gr.State(initial_view())
    run_pick, refresh, abort, resume = _run_bar()
    action = gr.Markdown(elem_id="monitor-action")
    status = gr.Markdown(text.NO_RUN, elem_id="monitor-status")
    smoothing = gr.Slider(
        0, 0.99, value=0.6, step=0.01, label=text.SMOOTHING_LABEL, elem_id="monitor-smoothing"
    )
    live = _live_widget(smoothing.value, handlers)
    with gr.Accordion(text.METRIC_HELP_HEADING, open=False, elem_id="monitor-metric-help"):
        gr.Markdown(metric_help_markdown())
    rollouts, step_pick, prompt_pick, rollout_note, video, question, completions = _rollouts_section()
    rollouts_state = gr.State([])
    with gr.Accordion(text.LOG_HEADING, open=False, elem_id="monitor-log-section") as log_section:
        # Scrolled to its newest line by LOG_TO_END_JS (a gr.Code opened at the tail's oldest line).
        log = gr.Textbox(
            lines=LOG_BOX_LINES, max_lines=LOG_BOX_LINES, interactive=False, autoscroll=False,
            show_label=False, elem_id="monitor-log", buttons=["copy"],
        )  # fmt: skip
    return MonitorWidgets(
        state=state, view=view, run_pick=run_pick, refresh=refresh, abort=abort, resume=resume,
        action=action, status=status, smoothing=smoothing, live=live, rollouts=rollouts,
        step_pick=step_pick, prompt_pick=prompt_pick, rollout_note=rollout_note, video=video,
        question=question, completions=completions, rollouts_state=rollouts_state,
        log_section=log_section, log=log,
    )  # fmt: skip


SET_SMOOTHING_JS = """(weight) => {
    const charts = document.querySelector('#monitor-live .vgrpo-charts');
    if (charts && charts.vgrpoCharts) charts.vgrpoCharts.setSmoothing(weight);
}"""
# The Refresh button asks the page for a poll at once (before the run list is re-read on the server).
POLL_NOW_JS = """(...args) => {
    const charts = document.querySelector('#monitor-live .vgrpo-charts');
    if (charts && charts.vgrpoCharts) charts.vgrpoCharts.poll(true);
    return args;
}"""
# The log box shows its newest line when its text changes, unless the reader scrolled up to read:
# Gradio's autoscroll left a tail that arrived while the section opened at its oldest line.
LOG_TO_END_JS = """() => {
    const box = document.querySelector('#monitor-log textarea');
    if (!box) return;
    if (!box.dataset.vgrpoTail) {
        box.dataset.vgrpoTail = 'end';
        box.addEventListener('scroll', () => {
            const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
            box.dataset.vgrpoTail = atEnd ? 'end' : 'reading';
        });
    }
    if (box.dataset.vgrpoTail === 'end') requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
}"""
QUIET = {"show_progress": "hidden"}


def _news_io(w: MonitorWidgets) -> tuple[list[Any], list[Any]]:
    """on_news's ``(inputs, outputs)``."""
    return [w.run_pick, w.state, w.view, w.step_pick], [w.state, w.status, w.log, w.step_pick, w.run_pick]


def _wire_events(w: MonitorWidgets, h: MonitorHandlers) -> None:
    inputs, outputs = _news_io(w)
    # A new value of the live component (another run, Refresh, Abort, Resume) makes the page poll at
    # once and fires the component's change event, as the page does when a poll's news changed
    # (status, rollouts, the open log): both read the rest with on_news.
    w.run_pick.change(h.show_run, w.run_pick, w.live, **QUIET)
    w.live.change(h.on_news, inputs, outputs, **QUIET)
    # Smoothing is the page's own: the slider never costs a request.
    w.smoothing.release(None, [w.smoothing], None, js=SET_SMOOTHING_JS)
    w.refresh.click(
        h.refresh, w.run_pick, [w.run_pick, w.live], js=POLL_NOW_JS, api_name="monitor_refresh", **QUIET
    )
    rollout_views = [w.video, w.question, w.completions]
    w.step_pick.change(
        h.on_step,
        [w.run_pick, w.step_pick],
        [w.rollouts_state, w.prompt_pick, w.rollout_note, *rollout_views],
    )
    w.prompt_pick.input(h.on_prompt, [w.rollouts_state, w.prompt_pick], rollout_views)
    # The log is read only while its section is open.
    w.log_section.expand(_log_opened, w.view, w.view, **QUIET).then(h.on_news, inputs, outputs, **QUIET)
    w.log_section.collapse(_log_closed, w.view, w.view, **QUIET)
    w.log.change(None, None, None, js=LOG_TO_END_JS)
    # The picker's labels carry each run's status, which an abort or a resume changes; the page polls
    # again at once (a resumed run is active again).
    for button, handler, handler_outputs in (
        (w.abort, h.on_abort, [w.action]),
        (w.resume, h.on_resume, [w.action, w.state]),
    ):
        button.click(handler, w.run_pick, handler_outputs).then(h.reload_runs, w.run_pick, w.run_pick).then(
            h.show_run, w.run_pick, w.live, **QUIET
        )


def _log_opened(view: dict) -> dict:
    return {**view, "log_open": True}


def _log_closed(view: dict) -> dict:
    return {**view, "log_open": False}


def create_monitor_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets (``run`` is the run dropdown)."""
    h = MonitorHandlers(ctx, supervisor)
    w = build_layout(h)
    _wire_events(w, h)
    return {
        "run": w.run_pick,
        "reload_runs": h.reload_runs,
        "status": w.status,
        "state": w.state,
        "refresh": Refresh(h.reload_runs, [w.run_pick], [w.run_pick]),
    }
