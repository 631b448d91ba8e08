"""What the Monitor shows as text and HTML, from the run DB's records: the progress line, the run's
status headline, the rollout cards. Pure functions (no Gradio), so they are tested alone."""

from __future__ import annotations

import html
import statistics
import time
from collections.abc import Sequence

from studio import plots, problems, text
from studio.context import StudioContext
from studio.supervisor import Supervisor
from trainer.core import metrics_keys as mk
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.rundb import ENDED_EARLY_EVENT, Rollout, Run
from trainer.score.rewards import extract_choice, parse_completion

STATUS_COLORS = {
    "queued": "#a1a1aa",
    "running": "#2563eb",
    "finished": "#16a34a",
    "failed": "#dc2626",
    "aborted": "#d97706",
}


def total_steps(supervisor: Supervisor, run_id: int) -> int | None:
    """Planned steps: recorded at launch, else the stored config's max_steps."""
    info = supervisor.launch_info(run_id)
    if info is not None and info.total_steps:
        return int(info.total_steps)
    stored = supervisor.ctx.store.get_config(run_id)
    max_steps = (stored.config.get("optim", {}) if stored else {}).get("max_steps", -1)
    return int(max_steps) if max_steps and max_steps > 0 else None


def time_budget_s(supervisor: Supervisor, run_id: int) -> float:
    """The run's time budget, the stored config's max_train_seconds (0: none)."""
    stored = supervisor.ctx.store.get_config(run_id)
    budget = (stored.config.get("run", {}) if stored else {}).get("max_train_seconds", 0)
    return float(budget or 0)


def train_s(series: plots.Series, now: float | None = None) -> float | None:
    """Seconds the run has trained, on the clock its time budget counts (from this attempt's first
    step): the last ``time/train_s`` logged, plus the time since it was logged when ``now`` (a
    wall-clock time, for a run still running) is given. None before the first step logs it."""
    points = series.get(mk.TIME_TRAIN_S)
    if not points or not points[1]:
        return None
    return points[1][-1] + (max(0.0, now - points[2][-1]) if now is not None else 0.0)


def run_eta_s(
    series: plots.Series, total: int | None, budget_s: float = 0.0, now: float | None = None
) -> float | None:
    """Steps left x the median of the last 20 ``time/step_s`` (wall clock when not logged); with a
    time budget (``budget_s``, max_train_seconds) at most the budget left, ``budget_s - train_s``:
    the run ends then, however many steps it planned."""
    eta = _steps_eta_s(series, total)
    trained = train_s(series, now) if budget_s else None
    if trained is None:
        return eta
    left = max(0.0, budget_s - trained)
    return left if eta is None else min(eta, left)


def _steps_eta_s(series: plots.Series, total: int | None) -> float | None:
    if total is None:
        return None
    step_times = series.get(mk.TIME_STEP_S)
    last = plots.last_step(series)
    if step_times and step_times[1] and last is not None:
        return max(0, total - last) * statistics.median(step_times[1][-20:])
    longest = max(series.values(), key=lambda s: len(s[0]), default=None)
    return None if longest is None else plots.eta_s(longest[0], longest[2], total)


def progress_html(
    step: int | None,
    total: int | None,
    eta: float | None,
    elapsed_s: float | None = None,
    budget_s: float = 0.0,
    trained_s: float | None = None,
) -> str:
    """The bar and its line: step of total, ETA, and the time the run has trained (``elapsed_s``: its
    attempts' durations summed, not the pauses between them; it changes every tick, so it lives
    here rather than in the status, which is sent only when the run row changes).

    With a time budget (``budget_s`` seconds, ``trained_s`` of them trained) the bar is the further
    along of steps and time: a run with only a time budget (max_steps 1,000,000) shows the share of
    its budget, not 0 % of its steps."""
    step = step or 0
    steps_done = min(1.0, step / total) if total else None
    time_done = min(1.0, trained_s / budget_s) if budget_s and trained_s is not None else None
    eta_text = f" - ETA {plots.format_duration(eta)}"
    if time_done is not None and (steps_done is None or time_done > steps_done):
        pct = 100.0 * time_done
        budget = plots.format_duration(budget_s)
        label = f"step {step} ({pct:.0f} % of the {budget} time budget){eta_text}"
    elif total and steps_done is not None:
        pct = 100.0 * steps_done
        label = f"step {step} / {total} ({pct:.0f} %){eta_text}"
    else:
        pct, label = 0.0, f"step {step}"
    if elapsed_s is not None:
        label += f" - trained for {plots.format_duration(elapsed_s)}"
    return (
        '<div id="monitor-progress-bar" '
        'style="background:#e4e4e7;border-radius:6px;height:14px;overflow:hidden">'
        f'<div style="width:{pct:.1f}%;height:100%;background:#2563eb"></div></div>'
        f'<div style="font-size:0.9em;margin-top:4px">{label}</div>'
    )


def status_markdown(run: Run, ended_early: str | None = None, cluster_note: str | None = None) -> str:
    """The run's headline: status, owner, attempt, start, folder; why it stopped or failed, and
    ``ended_early`` (its ENDED_EARLY_EVENT message) when a limit ended it before its last step.
    ``cluster_note``: a Ray run's job status, or that its cluster does not answer
    (``Supervisor.cluster_note``). Otherwise only the run row's fields: the text changes when the row does."""
    color = STATUS_COLORS.get(run.status, "#71717a")
    parts = [f'### #{run.id} {text.literal(run.name)} <span style="color:{color}">{run.status}</span>']
    facts = []
    if run.ray_job_id:
        facts.append(f"Ray job `{run.ray_job_id}` on {run.ray_address}")
    if run.pid:
        facts.append(f"pid {run.pid} on {run.host or '?'}")
    if run.attempt > 1:
        facts.append(f"attempt {run.attempt}")
    if run.started_at:
        facts.append("started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)))
    if run.output_dir:
        facts.append(f"output `{run.output_dir}`")
    parts.append(" - ".join(facts))
    if cluster_note:
        parts.append(f"**Cluster:** {text.literal(cluster_note)}")
    if run.end_reason:  # e.g. the user's abort: a reason, not an error
        parts.append(f"**Stopped:** {text.literal(run.end_reason)}")
    if ended_early:
        parts.append(f"**Ended early:** {text.literal(ended_early)}")
    if run.error or run.traceback:
        problem = problems.problem_from_text(run.error or "", run.traceback or "")
        parts.append(problems.problem_markdown(problem, "Error"))
    return "\n\n".join(p for p in parts if p)


def abort_message(run: Run, pid: int, grace_s: float) -> str:
    """What Abort says: the signal sent to a local trainer, or the request a Ray job's trainer reads."""
    if run.ray_job_id:
        return text.ABORT_SENT_RAY.format(run_id=run.id, grace=grace_s)
    return text.ABORT_SENT.format(run_id=run.id, pid=pid)


def resume_message(run: Run, pid: int) -> str:
    """What Resume says: the new trainer's pid, or the new Ray job."""
    if run.ray_job_id:
        return text.RESUMED_RAY.format(run_id=run.id, job=run.ray_job_id)
    return text.RESUMED.format(run_id=run.id, pid=pid)


def ended_early_message(ctx: StudioContext, run: Run) -> str | None:
    """Why a finished run ended before its last step (max_train_seconds, early_stop_accuracy)."""
    if run.status != "finished":
        return None
    ended = [e.message for e in ctx.store.events(run.id) if e.kind == ENDED_EARLY_EVENT]
    return ended[-1] if ended else None


def is_multiple_choice(rollout: Rollout) -> bool:
    """A multiple-choice rollout (rows written before problem types have none)."""
    return rollout.problem_type in (None, MULTIPLE_CHOICE)


# The accuracy of a numerical, OCR, free-form or regression answer is graded (a relative error, a word
# overlap), so "correct" is a threshold on it: at least half right.
CORRECT_ACCURACY = 0.5


def accuracy_of(rollout: Rollout) -> float | None:
    """The accuracy reward of a completion: its ``accuracy`` entry in the run's rewards, else the
    seed's accuracy column."""
    value = rollout.rewards.get("accuracy") if rollout.rewards else None
    return value if value is not None else rollout.accuracy_reward


def is_correct(rollout: Rollout) -> bool:
    """The completion's answer names the correct option (the accuracy reward when not decidable);
    for other problem types, its accuracy reward is at least CORRECT_ACCURACY."""
    if not is_multiple_choice(rollout):
        return (accuracy_of(rollout) or 0) >= CORRECT_ACCURACY
    if rollout.correct_letter and rollout.options:
        answer = rollout.answer if rollout.answer is not None else parse_completion(rollout.completion).answer
        if answer is not None:
            return extract_choice(answer, rollout.options) == rollout.correct_letter
        return False
    return (rollout.accuracy_reward or 0) > 0


def verdict(rollout: Rollout) -> str:
    """The card's badge: correct / wrong for an option; the graded accuracy's value otherwise."""
    ok = is_correct(rollout)
    mark = "&#10003;" if ok else "&#10007;"
    if is_multiple_choice(rollout):
        return f"{mark} correct" if ok else f"{mark} wrong"
    return f"{mark} accuracy {_num(accuracy_of(rollout))}"


def scores_text(rollout: Rollout) -> str:
    """Each reward's value (the run's rewards list, else the seed's two), the total, the advantage."""
    rewards = dict(rollout.rewards) or {"format": rollout.format_reward, "accuracy": rollout.accuracy_reward}
    parts = [
        f'<span class="vgrpo-reward" data-reward="{html.escape(name)}">{html.escape(name)} '
        f"{_num(value) if value is not None else 'n/a'}</span>"
        for name, value in rewards.items()
    ]
    return " - ".join(
        [*parts, f"total {_num(rollout.total_reward)}", f"<b>advantage {_num(rollout.advantage)}</b>"]
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}" if value < 0 else f"{value:.3f}"


def completions_html(rollouts: Sequence[Rollout]) -> str:
    """The G completions of one prompt side by side: reasoning, answer, rewards, advantage."""
    cards = []
    for r in sorted(rollouts, key=lambda r: r.group_index):
        parsed = parse_completion(r.completion)
        think = r.think if r.think is not None else parsed.think
        answer = r.answer if r.answer is not None else parsed.answer
        border = "#16a34a" if is_correct(r) else "#dc2626"
        badge = verdict(r)
        body = (
            f'<div class="vgrpo-think" style="color:#52525b;font-style:italic;white-space:pre-wrap">'
            f"{html.escape(think) if think else '<em>(no &lt;think&gt; block)</em>'}</div>"
            f'<div class="vgrpo-answer" style="margin-top:6px;font-weight:600;white-space:pre-wrap">answer: '
            f"{html.escape(answer) if answer else '<em>(no &lt;answer&gt; block)</em>'}</div>"
        )
        if think is None and answer is None:
            body += f'<pre style="white-space:pre-wrap;font-size:0.85em">{html.escape(r.completion)}</pre>'
        scores = scores_text(r)
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
    """The question with its options, the correct one marked; for other problem types, its type and
    reference answer."""
    head = (
        f'<div style="color:#71717a;font-size:0.85em">{html.escape(rollout.prompt_id)} - '
        f"step {rollout.step}</div><p>{html.escape(rollout.question)}</p>"
    )
    if not is_multiple_choice(rollout):
        kind = html.escape(str(rollout.problem_type))
        return head + (
            f'<div class="vgrpo-reference"><span style="color:#71717a">{kind}'
            f' question, reference answer:</span> <b style="color:#15803d;white-space:pre-wrap">'
            f"{html.escape(rollout.reference or '')}</b></div>"
        )
    good = "font-weight:700;color:#15803d"
    options = "".join(
        f'<li style="list-style:none;{good if k == rollout.correct_letter else ""}">'
        f"({k}) {html.escape(v)}{' &#10003;' if k == rollout.correct_letter else ''}</li>"
        for k, v in rollout.options.items()
    )
    return f'{head}<ul style="padding:0">{options}</ul>'
