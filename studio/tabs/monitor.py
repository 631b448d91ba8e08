"""Monitor tab: one run's status, progress and ETA, live metric plots, rollouts, log; Abort and Resume.

A gr.Timer refreshes the page every few seconds, and only while it matters: while the Monitor is the
tab shown and its run is queued or running (a finished run stops the timer; a resume or another run
starts it again). Each tick sends only what changed: the charts get the new points
(``studio.monitor_charts`` deltas, appended in the page), the status, progress and log only when
their text changed, the log only while its section is open. A browser session keeps a mirror of
what its page holds (a gr.State), so a long run costs one small query per tick. Everything shown is
read from the run DB and the run's log file, so a reload or a studio restart shows the same thing.
"""

from __future__ import annotations

import html
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import choices, monitor_charts, plots, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.supervisor import Supervisor
from trainer.core import metrics_keys as mk
from trainer.core.errors import StudioError
from trainer.rundb import ENDED_EARLY_EVENT, Rollout, Run
from trainer.score.rewards import extract_choice, parse_completion

REFRESH_S = 3.0
LOG_LINES = 60
CHARTS_JS = (Path(__file__).resolve().parent.parent / "static" / "monitor_charts.js").read_text()
# Tick events of many viewers run side by side (a tick is a few small queries); one gradio worker
# per event would queue 30 viewers' ticks behind each other.
TICK_CONCURRENCY = 4
STATUS_COLORS = {
    "queued": "#a1a1aa",
    "running": "#2563eb",
    "finished": "#16a34a",
    "failed": "#dc2626",
    "aborted": "#d97706",
}


def empty_state(run_id: int | None = None) -> dict[str, Any]:
    """Per-session mirror of what the page shows: the run, the points its charts hold, the texts
    last sent (unchanged ones are not sent again), whether the timer runs."""
    return {
        "run_id": run_id,
        "series": {},  # plots.Series: the points sent to the page's charts
        "last_step": None,
        "reset": True,  # the next chart delta replaces whatever the page holds
        "seq": 0,  # chart deltas sent: each is a new value, so the page applies even a repeated reset
        "shown": {},  # output name -> the text last sent
        "timer_active": None,
        "rollout_steps": None,
        "status": None,
        "ended_early": None,  # the run's ENDED_EARLY_EVENT message, read when its status changes
    }


def initial_view() -> dict[str, bool]:
    """What the session's page shows (written by tab and section events, read by the tick)."""
    return {"visible": False, "log_open": False, "rollouts_open": True}


def total_steps(supervisor: Supervisor, run_id: int) -> int | None:
    """Planned steps: recorded at launch, else the stored config's max_steps."""
    info = supervisor.launch_info(run_id)
    if info is not None and info.total_steps:
        return int(info.total_steps)
    stored = supervisor.ctx.store.get_config(run_id)
    max_steps = (stored.config.get("optim", {}) if stored else {}).get("max_steps", -1)
    return int(max_steps) if max_steps and max_steps > 0 else None


def run_eta_s(series: plots.Series, total: int | None) -> float | None:
    """Steps left x the median of the last 20 ``time/step_s`` (wall clock when not logged)."""
    if total is None:
        return None
    step_times = series.get(mk.TIME_STEP_S)
    last = plots.last_step(series)
    if step_times and step_times[1] and last is not None:
        return max(0, total - last) * statistics.median(step_times[1][-20:])
    longest = max(series.values(), key=lambda s: len(s[0]), default=None)
    return None if longest is None else plots.eta_s(longest[0], longest[2], total)


def progress_html(
    step: int | None, total: int | None, eta: float | None, elapsed_s: float | None = None
) -> str:
    """The bar and its line: step of total, ETA, and the time the run has run (it changes every
    tick, so it lives here rather than in the status, which is sent only when the run row changes)."""
    step = step or 0
    if total:
        pct = min(100.0, 100.0 * step / total)
        label = f"step {step} / {total} ({pct:.0f} %) - ETA {plots.format_duration(eta)}"
    else:
        pct, label = 0.0, f"step {step}"
    if elapsed_s is not None:
        label += f" - elapsed {plots.format_duration(elapsed_s)}"
    return (
        '<div id="monitor-progress-bar" '
        'style="background:#e4e4e7;border-radius:6px;height:14px;overflow:hidden">'
        f'<div style="width:{pct:.1f}%;height:100%;background:#2563eb"></div></div>'
        f'<div style="font-size:0.9em;margin-top:4px">{label}</div>'
    )


def elapsed_s(run: Run, now: float | None = None) -> float | None:
    if not run.started_at:
        return None
    return (run.ended_at or (time.time() if now is None else now)) - run.started_at


def status_markdown(run: Run, ended_early: str | None = None) -> str:
    """The run's headline: status, owner, attempt, start, folder; why it stopped or failed, and
    ``ended_early`` (its ENDED_EARLY_EVENT message) when a limit ended it before its last step.
    Only the run row's fields: the text changes when the row does."""
    color = STATUS_COLORS.get(run.status, "#71717a")
    parts = [f'### #{run.id} {html.escape(run.name)} <span style="color:{color}">{run.status}</span>']
    facts = []
    if run.pid:
        facts.append(f"pid {run.pid} on {run.host or '?'}")
    if run.attempt > 1:
        facts.append(f"attempt {run.attempt}")
    if run.started_at:
        facts.append("started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)))
    if run.output_dir:
        facts.append(f"output `{run.output_dir}`")
    parts.append(" - ".join(facts))
    if run.end_reason:  # e.g. the user's abort: a reason, not an error
        parts.append(f"**Stopped:** {html.escape(run.end_reason)}")
    if ended_early:
        parts.append(f"**Ended early:** {html.escape(ended_early)}")
    if run.error or run.traceback:
        problem = problems.problem_from_text(run.error or "", run.traceback or "")
        parts.append(problems.problem_markdown(problem, "Error"))
    return "\n\n".join(p for p in parts if p)


def ended_early_message(ctx: StudioContext, run: Run) -> str | None:
    """Why a finished run ended before its last step (max_train_seconds, early_stop_accuracy)."""
    if run.status != "finished":
        return None
    ended = [e.message for e in ctx.store.events(run.id) if e.kind == ENDED_EARLY_EVENT]
    return ended[-1] if ended else None


def is_correct(rollout: Rollout) -> bool:
    """The completion's answer names the correct option (the accuracy reward when not decidable)."""
    if rollout.correct_letter and rollout.options:
        answer = rollout.answer if rollout.answer is not None else parse_completion(rollout.completion).answer
        if answer is not None:
            return extract_choice(answer, rollout.options) == rollout.correct_letter
        return False
    return (rollout.accuracy_reward or 0) > 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}" if value < 0 else f"{value:.3f}"


def completions_html(rollouts: Sequence[Rollout]) -> str:
    """The G completions of one prompt side by side: reasoning, answer, rewards, advantage."""
    cards = []
    for r in sorted(rollouts, key=lambda r: r.group_index):
        parsed = parse_completion(r.completion)
        think = r.think if r.think is not None else parsed.think
        answer = r.answer if r.answer is not None else parsed.answer
        ok = is_correct(r)
        border = "#16a34a" if ok else "#dc2626"
        badge = "&#10003; correct" if ok else "&#10007; wrong"
        body = (
            f'<div class="vgrpo-think" style="color:#52525b;font-style:italic;white-space:pre-wrap">'
            f"{html.escape(think) if think else '<em>(no &lt;think&gt; block)</em>'}</div>"
            f'<div class="vgrpo-answer" style="margin-top:6px;font-weight:600;white-space:pre-wrap">answer: '
            f"{html.escape(answer) if answer else '<em>(no &lt;answer&gt; block)</em>'}</div>"
        )
        if think is None and answer is None:
            body += f'<pre style="white-space:pre-wrap;font-size:0.85em">{html.escape(r.completion)}</pre>'
        scores = (
            f"format {_num(r.format_reward)} - accuracy {_num(r.accuracy_reward)} - "
            f"total {_num(r.total_reward)} - <b>advantage {_num(r.advantage)}</b>"
        )
        cards.append(
            '<div class="vgrpo-completion" '
            f'style="flex:1 1 220px;border:2px solid {border};border-radius:8px;padding:8px">'
            f'<div style="display:flex;justify-content:space-between;font-size:0.85em">'
            f'<span class="vgrpo-index">#{r.group_index}</span>'
            f'<span style="color:{border}">{badge}</span></div>'
            f'{body}<div style="font-size:0.8em;margin-top:6px;color:#3f3f46">{scores}</div></div>'
        )
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(cards)}</div>'


def question_html(rollout: Rollout) -> str:
    good = "font-weight:700;color:#15803d"
    options = "".join(
        f'<li style="list-style:none;{good if k == rollout.correct_letter else ""}">'
        f"({k}) {html.escape(v)}{' &#10003;' if k == rollout.correct_letter else ''}</li>"
        for k, v in rollout.options.items()
    )
    return (
        f'<div style="color:#71717a;font-size:0.85em">{html.escape(rollout.prompt_id)} - '
        f"step {rollout.step}</div>"
        f'<p>{html.escape(rollout.question)}</p><ul style="padding:0">{options}</ul>'
    )


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
    progress: Any
    smoothing: Any
    charts: Any  # gr.HTML running studio/static/monitor_charts.js: one Plotly figure per PANELS entry
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
    timer: Any


class MonitorHandlers:
    """What the timer, the pickers and the buttons do; a failure becomes the status or action line."""

    def __init__(self, ctx: StudioContext, supervisor: Supervisor) -> None:
        self.ctx = ctx
        self.supervisor = supervisor

    def tick(self, run_id: int | None, st: dict, view: dict) -> tuple:
        """-> state, status, progress, charts, log, rollout steps, run picker, timer; each output
        skipped unless it changed."""
        import gradio as gr

        skip = gr.skip()
        if not view.get("visible"):
            # Another tab is shown: nothing is read or sent; showing the Monitor again resets the charts.
            return (st, skip, skip, skip, skip, skip, skip, self._timer(st, False))
        if run_id is None:
            st = empty_state()
            return (
                st,
                text.NO_RUN,
                progress_html(None, None, None),
                skip,
                "",
                skip,
                skip,
                self._timer(st, False),
            )
        if st.get("run_id") != run_id:
            st = empty_state(run_id)
        else:
            st = {**st, "shown": dict(st["shown"])}
        try:
            self.supervisor.reap([run_id])  # reads never write: a dead trainer's run is ended here
            run = self.ctx.store.get_run(run_id)
        except StudioError as exc:
            st = empty_state()
            error = problems.error_markdown(exc)
            return (st, error, progress_html(None, None, None), skip, "", skip, skip, self._timer(st, False))
        charts = self._charts(run_id, st)
        total = total_steps(self.supervisor, run_id)
        if run.status == "finished" and st["last_step"]:
            # A run may finish early (max_train_seconds, early_stop_accuracy): what it did is the whole run.
            total = st["last_step"]
        eta = run_eta_s(st["series"], total) if run.is_active else 0.0
        bar = progress_html(st["last_step"], total, eta, elapsed_s(run))
        picker_update: Any = skip
        if run.status != st["status"]:
            # The run picker's labels carry each run's status: relabel them when this run's changes
            # (choices only, so the picked value and its change event are left alone).
            st["status"] = run.status
            st["ended_early"] = ended_early_message(self.ctx, run)
            picker_update = gr.Dropdown(choices=choices.run_choices(self.ctx.store.list_runs()))
        steps = (
            self.ctx.store.rollout_steps(run_id) if view.get("rollouts_open", True) else st["rollout_steps"]
        )
        steps_update: Any = skip
        if steps != st["rollout_steps"]:
            st["rollout_steps"] = steps
            steps_update = gr.Dropdown(choices=steps, value=steps[-1] if steps else None)
        log = self.supervisor.log_tail(run, LOG_LINES) if view.get("log_open") else None
        return (
            st,
            _if_changed(st, "status", status_markdown(run, ended_early=st["ended_early"])),
            _if_changed(st, "progress", bar),
            charts,
            skip if log is None else _if_changed(st, "log", log),
            steps_update,
            picker_update,
            self._timer(st, run.is_active),
        )

    def _charts(self, run_id: int, st: dict) -> Any:
        """The charts' delta since what the page holds (``st`` updated), or gr.skip()."""
        import gradio as gr

        # The last held step is read again: an eval point is logged for a step after its training
        # metrics, and a tick between the two would otherwise never see it.
        after = None if st["last_step"] is None else st["last_step"] - 1
        fetched = self.ctx.store.metrics_since(run_id, after_step=after)
        st["series"], delta = monitor_charts.chart_delta(st["series"], fetched, run_id, reset=st["reset"])
        st["last_step"] = plots.last_step(st["series"])
        st["reset"] = False
        if delta is None:
            return gr.skip()
        st["seq"] += 1
        return monitor_charts.delta_json({**delta, "seq": st["seq"]})

    @staticmethod
    def _timer(st: dict, active: bool) -> Any:
        """The timer runs only while it matters; sent only when that changes."""
        import gradio as gr

        if st.get("timer_active") == active:
            return gr.skip()
        st["timer_active"] = active
        return gr.Timer(active=active)

    def show(self, view: dict, st: dict) -> tuple[dict, dict]:
        """The Monitor tab was selected: ticks read and send again, from a fresh chart."""
        return {**view, "visible": True}, {**st, "reset": True, "shown": {}, "timer_active": None}

    def hide(self, view: dict) -> dict:
        return {**view, "visible": False}

    def on_step(self, run_id: int | None, step: int | None) -> tuple:
        import gradio as gr

        if run_id is None or step is None:
            return [], gr.Dropdown(choices=[], value=None), text.NO_ROLLOUTS
        items = self.ctx.store.rollouts(run_id, int(step))
        prompts = list(dict.fromkeys(r.prompt_id for r in items))
        return items, gr.Dropdown(choices=prompts, value=prompts[0] if prompts else None), ""

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
        return text.ABORT_SENT.format(run_id=run_id, pid=pid)

    def on_resume(self, run_id: int | None) -> tuple[str, dict]:
        if run_id is None:
            return text.NO_RUN, empty_state()
        try:
            launched = self.supervisor.resume(run_id)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc), empty_state(run_id)
        return text.RESUMED.format(run_id=run_id, pid=launched.pid), empty_state(run_id)

    def refresh(self, run_id: int | None, st: dict, view: dict) -> tuple:
        """The Refresh button: the run picker re-read (runs launched elsewhere appear) and a tick."""
        picker = self.reload_runs(run_id)
        out = list(self.tick(picker.value, st, view))
        out[6] = picker
        return tuple(out)

    def reload_runs(self, current: int | None) -> Any:
        import gradio as gr

        items = choices.run_choices(self.supervisor.runs())
        ids = [v for _, v in items]
        value = current if current in ids else (ids[0] if ids else None)
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


def _charts_widget(smoothing: float) -> Any:
    """The live charts: Plotly from the plotly package's own bundle (served as a static file, so
    the page works offline), the points held and appended in the page."""
    import gradio as gr

    bundle = Path(plotly_bundle_dir()) / "plotly.min.js"
    return gr.HTML(
        "",
        html_template='<div class="vgrpo-charts"></div>',
        js_on_load=CHARTS_JS,
        head=f'<script src="/gradio_api/file={bundle}"></script>',
        elem_id="monitor-charts",
        smoothing=smoothing,
    )


def plotly_bundle_dir() -> str:
    """The folder of the plotly package's ``plotly.min.js`` (app.py serves it as a static path)."""
    import plotly

    return str(Path(plotly.__file__).resolve().parent / "package_data")


def build_layout() -> MonitorWidgets:
    """The tab's widgets: run bar, status and progress, metric plots, rollouts, log."""
    import gradio as gr

    gr.Markdown(text.INTRO_MONITOR)
    state = gr.State(empty_state())
    view = gr.State(initial_view())
    run_pick, refresh, abort, resume = _run_bar()
    action = gr.Markdown(elem_id="monitor-action")
    status = gr.Markdown(text.NO_RUN, elem_id="monitor-status")
    progress = gr.HTML(progress_html(None, None, None), elem_id="monitor-progress")
    smoothing = gr.Slider(
        0, 0.99, value=0.6, step=0.01, label=text.SMOOTHING_LABEL, elem_id="monitor-smoothing"
    )
    charts = _charts_widget(smoothing.value)
    rollouts, step_pick, prompt_pick, rollout_note, video, question, completions = _rollouts_section()
    rollouts_state = gr.State([])
    with gr.Accordion(text.LOG_HEADING, open=False, elem_id="monitor-log-section") as log_section:
        log = gr.Code(language=None, interactive=False, max_lines=30, elem_id="monitor-log")
    # Starts stopped: the Monitor is not the tab a page opens on (MonitorHandlers.show starts it).
    timer = gr.Timer(REFRESH_S, active=False)
    return MonitorWidgets(
        state=state, view=view, run_pick=run_pick, refresh=refresh, abort=abort, resume=resume,
        action=action, status=status, progress=progress, smoothing=smoothing, charts=charts,
        rollouts=rollouts, step_pick=step_pick, prompt_pick=prompt_pick, rollout_note=rollout_note,
        video=video, question=question, completions=completions, rollouts_state=rollouts_state,
        log_section=log_section, log=log, timer=timer,
    )  # fmt: skip


SET_SMOOTHING_JS = """(weight) => {
    const charts = document.querySelector('#monitor-charts .vgrpo-charts');
    if (charts && charts.vgrpoCharts) charts.vgrpoCharts.setSmoothing(weight);
}"""


# Every event that runs a tick: no progress overlay (it would flash the whole tab every 3 s), one
# shared pool of workers.
QUIET = {"show_progress": "hidden", "concurrency_limit": TICK_CONCURRENCY, "concurrency_id": "monitor_tick"}


def _tick_io(w: MonitorWidgets) -> tuple[list[Any], list[Any]]:
    """The tick's ``(inputs, outputs)``."""
    outputs = [w.state, w.status, w.progress, w.charts, w.log, w.step_pick, w.run_pick, w.timer]
    return [w.run_pick, w.state, w.view], outputs


def _wire_events(w: MonitorWidgets, h: MonitorHandlers) -> None:
    inputs, outputs = _tick_io(w)
    quiet = QUIET
    w.run_pick.change(h.tick, inputs, outputs, **quiet)
    # Smoothing is the page's own: the slider never costs a request.
    w.smoothing.release(None, [w.smoothing], None, js=SET_SMOOTHING_JS)
    # api names: bench/studio_load.py polls the Monitor as headless viewers do (gradio_client).
    w.timer.tick(h.tick, inputs, outputs, api_name="monitor_tick", **quiet)
    # One request: the run list re-read and the run's news (two chained events took a second).
    w.refresh.click(h.refresh, inputs, outputs, api_name="monitor_refresh", **quiet)
    w.step_pick.change(
        h.on_step, [w.run_pick, w.step_pick], [w.rollouts_state, w.prompt_pick, w.rollout_note]
    )
    w.prompt_pick.change(h.on_prompt, [w.rollouts_state, w.prompt_pick], [w.video, w.question, w.completions])
    # The log is read only while its section is open.
    w.log_section.expand(lambda v: {**v, "log_open": True}, w.view, w.view).then(
        h.tick, inputs, outputs, **quiet
    )
    w.log_section.collapse(lambda v: {**v, "log_open": False}, w.view, w.view)
    w.rollouts.expand(lambda v: {**v, "rollouts_open": True}, w.view, w.view).then(
        h.tick, inputs, outputs, **quiet
    )
    w.rollouts.collapse(lambda v: {**v, "rollouts_open": False}, w.view, w.view)
    # The picker's labels carry each run's status, which an abort or a resume changes; a resumed
    # run's timer starts again.
    w.abort.click(h.on_abort, w.run_pick, w.action).then(h.reload_runs, w.run_pick, w.run_pick).then(
        h.tick, inputs, outputs, **quiet
    )
    w.resume.click(h.on_resume, w.run_pick, [w.action, w.state]).then(
        h.reload_runs, w.run_pick, w.run_pick
    ).then(h.tick, inputs, outputs, **quiet)


def wire_visibility(
    w: MonitorWidgets, h: MonitorHandlers, monitor_tab: Any, other_tabs: Sequence[Any]
) -> None:
    """Ticks read and send only while the Monitor is the tab shown (a hidden tab does not poll)."""
    inputs, outputs = _tick_io(w)
    monitor_tab.select(h.show, [w.view, w.state], [w.view, w.state], show_progress="hidden").then(
        h.tick, inputs, outputs, **QUIET
    )
    for tab in other_tabs:
        tab.select(h.hide, w.view, w.view, show_progress="hidden").then(h.tick, inputs, outputs, **QUIET)


def create_monitor_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets (``run`` is the run dropdown) and
    ``wire_visibility(monitor_tab, other_tabs)``, which app.py calls once every tab exists."""
    w = build_layout()
    h = MonitorHandlers(ctx, supervisor)
    _wire_events(w, h)
    return {
        "run": w.run_pick,
        "reload_runs": h.reload_runs,
        "timer": w.timer,
        "status": w.status,
        "state": w.state,
        "refresh": Refresh(h.reload_runs, [w.run_pick], [w.run_pick]),
        "wire_visibility": lambda monitor_tab, others: wire_visibility(w, h, monitor_tab, others),
    }
