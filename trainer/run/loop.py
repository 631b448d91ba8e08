"""The GRPO training loop: sample a group per question, score, compute advantages, update.

Read it top to bottom: ``train`` sets up (accelerate, model, reference, data: ``trainer.run.startup``;
the run database) and runs ``grpo_step`` (``trainer.step.context``: rollout phase, update phase, step
metrics) until done, saving checkpoints and evaluating on the way. The math lives in
``trainer.update.grpo``, the rewards in ``trainer.score.rewards``; this file only wires them together.
Everything distributed goes through accelerate (DDP, DeepSpeed, FSDP from ``accelerate launch``).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.core import metrics_keys as mk
from trainer.core.config import RunConfig, TrainConfig
from trainer.core.errors import StudioError
from trainer.core.paths import default_db_url, default_workspace
from trainer.data.sampler import next_batch
from trainer.data.video import DecodeCache
from trainer.eval.evaluate import EvalResult, evaluate
from trainer.rollout.vllm_engine import attach_sampler
from trainer.run.checkpoint import TrainerState, resolve_resume, save_checkpoint, start_state
from trainer.run.reporting import make_reporter
from trainer.run.run_row import RaySeat, dataset_fingerprints, metrics_writer, open_run, stop_if_lost
from trainer.run.startup import build_step_context, load_records, make_accelerator, planned_steps
from trainer.run.startup import check_reference_loading as _check_reference_loading  # noqa: F401  (tests)
from trainer.rundb import (
    ENDED_EARLY_EVENT,
    MetricsWriter,
    Rollout,
    RunAborted,
    RunHandle,
    RunStore,
    run_lifecycle,
)
from trainer.step.context import MicroBatch, all_agree, max_over_processes
from trainer.step.grpo_step import grpo_step
from trainer.step.update_phase import backward as _backward  # noqa: F401  (tests import it from here)

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict[str, float]], None]

OOM_HINT = (
    "out of GPU memory: lower grpo_sample_size, generation_max_length, per_device_train_batch_size "
    "or the video's max_pixels/max_frames, or turn on gradient_checkpointing (or use LoRA / DeepSpeed ZeRO-3)"
)


@dataclass
class TrainOutcome:
    run_id: int | None
    output_dir: Path
    steps: int
    final_checkpoint: Path | None
    eval: EvalResult | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    model: Any = None  # the trained policy (unwrapped), for callers that go on using it


class StopRequested:
    """SIGTERM sets a flag; the loop stops at the next step boundary, saves, and ends ``aborted``.

    Stopping between steps (not inside one) lets every process agree on where to stop and save a
    checkpoint that resumes cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self.cause = "SIGTERM"
        self._previous: Any = None

    def __enter__(self) -> StopRequested:
        if _in_main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, _frame: Any) -> None:
        logger.warning("received %s: stopping after this step", signal.Signals(signum).name)
        self.requested = True

    def request(self, cause: str) -> None:
        """A stop without a signal (a Ray worker's heartbeat found the abort in the run database:
        its training thread cannot take a SIGTERM, which would end the worker's actor)."""
        logger.warning("%s: stopping after this step", cause)
        self.cause = cause
        self.requested = True


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
    attach_run_id: int | None = None,
    seat: RaySeat | None = None,
) -> TrainOutcome:
    """Run GRPO training as ``cfg`` says. ``attach_run_id`` continues a run row the studio created
    (status queued) instead of creating one; ``seat``: this process is a worker of that Ray job.
    Returns where the results are."""
    accelerator = make_accelerator(cfg)
    workspace = Path(cfg.data.workspace) if cfg.data.workspace else default_workspace()
    run_name = cfg.run.run_name or time.strftime("grpo-%Y%m%d-%H%M%S")
    output_dir = Path(cfg.run.output_dir) if cfg.run.output_dir else workspace / "outputs" / run_name
    resume_path = resolve_resume(cfg.run.resume_from_checkpoint, output_dir)

    store: RunStore | None = None
    held: RunHandle | None = None
    stop = StopRequested()
    with ExitStack() as stack:
        if accelerator.is_main_process:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / "train_config.yaml").write_text(cfg.to_yaml())
            store = stack.enter_context(RunStore(cfg.run.db or default_db_url(workspace)))
            run_id = open_run(store, cfg, run_name, output_dir, workspace, attach_run_id, resume_path)
            # SIGTERM is handled by StopRequested (stop at a step boundary, save, then abort); a Ray
            # worker's heartbeat asks it directly (its training thread takes no signal).
            on_stop = None if seat is None else lambda: stop.request("a stop request in the run database")
            held = stack.enter_context(
                run_lifecycle(
                    store,
                    run_id,
                    handle_sigterm=False,
                    ray_job=seat.job_id if seat is not None else None,
                    on_stop=on_stop,
                )
            )
            if seat is not None:
                store.record_workers(held.lease, seat.workers)
            fingerprints = dataset_fingerprints(cfg.data.dataset_use, workspace)
            store.set_config(run_id, cfg.to_dict(), fingerprints, lease=held.lease)
            if resume_path is not None:
                store.add_event(run_id, "resumed", f"from {resume_path}", lease=held.lease)
        # Installed before the model and data load, so an abort while loading also ends cleanly.
        stack.enter_context(stop)
        try:
            return _train(accelerator, cfg, workspace, output_dir, store, held, resume_path, progress, stop)
        except torch.OutOfMemoryError as exc:
            raise StudioError(f"{OOM_HINT} ({exc})") from exc


def _train(
    accelerator: Any,
    cfg: TrainConfig,
    workspace: Path,
    output_dir: Path,
    store: RunStore | None,
    held: RunHandle | None,
    resume_path: Path | None,
    progress: ProgressFn | None,
    stop: StopRequested,
) -> TrainOutcome:
    """The loop. ``store`` and ``held`` (the run this process claimed, whose lease fences every
    write) exist on the main process only."""
    run_id = held.run.id if held is not None else None
    cache = DecodeCache(cfg.data.video_cache_mb) if cfg.data.video_cache_mb else None
    records, eval_records = load_records(cfg, workspace)
    world = accelerator.num_processes
    steps = planned_steps(cfg, len(records), world)
    ctx, greedy_kwargs = build_step_context(accelerator, cfg, steps, cache, resume_path)
    model, processor = ctx.model, ctx.processor

    state = start_state(accelerator, model, str(run_id or ""), steps, resume_path)
    sync_sampler = attach_sampler(accelerator, ctx, cfg)
    writer = metrics_writer(store, held)
    reporter = _reporter(accelerator, cfg, output_dir)
    history: list[dict[str, float]] = []
    final_ckpt: Path | None = None
    eval_result: EvalResult | None = None  # a mid-run evaluation that ended the run is the final one
    started = time.perf_counter()

    def draw() -> list[Any]:
        """This process's share of the next per-step batch in the data order (moves the position)."""
        return _draw(records, cfg, state, accelerator.process_index, world)

    def evaluate_policy() -> EvalResult | None:
        return _evaluate(accelerator, model, processor, eval_records, cfg, greedy_kwargs, cache)

    ctx.refill = draw
    try:
        if all_agree(accelerator, stop.requested):
            raise RunAborted(f"stopped by {stop.cause} before the first step")
        while state.step < steps:
            stop_if_lost(accelerator, store, held)
            step_start = time.perf_counter()
            ctx.step = state.step + 1  # the step being taken: the reward functions' ``step``
            metrics, micro = grpo_step(ctx, [draw() for _ in range(cfg.optim.gradient_accumulation_steps)])
            if sync_sampler is not None:
                sync_sampler(accelerator.unwrap_model(model))
            state.step += 1
            metrics[mk.TIME_STEP_S] = time.perf_counter() - step_start
            _clock_schedule(accelerator, ctx.scheduler, state, metrics, started)
            history.append({"step": state.step, **metrics})
            if progress is not None and accelerator.is_main_process:
                progress(state.step, steps, metrics)

            should_stop = all_agree(accelerator, stop.requested)
            steps = _end_early(accelerator, cfg, history, started, state.step, steps, store, held)
            if cfg.run.eval_steps and state.step % cfg.run.eval_steps == 0 and state.step < steps:
                eval_result, steps = _mid_run_evaluation(
                    accelerator, cfg, evaluate_policy(), history, started, steps, writer, store, held
                )
            # Once the run knows whether this step is its last (a limit, an evaluation or SIGTERM
            # may end it here), so the metrics always reach the step of its last checkpoint.
            _log_step(cfg, state.step, state.step == steps or should_stop, metrics, micro, writer, reporter)
            if state.step % cfg.run.save_steps == 0 or state.step == steps or should_stop:
                stop_if_lost(accelerator, store, held, ask_database=True)
                final_ckpt = _save(
                    accelerator, model, processor, state, cfg, output_dir, store, held, metrics
                )
            if should_stop:
                raise RunAborted(f"stopped by {stop.cause} after saving a checkpoint")
        if eval_result is None:
            eval_result = evaluate_policy()
        if eval_result is not None and store is not None and held is not None and final_ckpt is not None:
            _store_final_evaluation(store, held, cfg, eval_result, writer, state.step)
    finally:  # the vLLM engine (with a sync_sampler) is shut down after the last collective
        _close(writer, reporter, ctx.sampler if sync_sampler is not None else None)
    return TrainOutcome(
        run_id, output_dir, state.step, final_ckpt, eval_result, history, accelerator.unwrap_model(model)
    )


def _end_early(
    accelerator: Any,
    cfg: TrainConfig,
    history: list[dict[str, float]],
    started: float,
    step: int,
    steps: int,
    store: RunStore | None,
    held: RunHandle | None,
) -> int:
    """The run's last step: ``step`` when it ends early here (recorded as an event), else ``steps``."""
    ended_early = _early_end_reason(accelerator, cfg, history, started, step)
    if not ended_early or step >= steps:
        return steps
    logger.info("%s: finishing", ended_early)
    if store is not None and held is not None:
        store.add_event(held.run.id, ENDED_EARLY_EVENT, ended_early, lease=held.lease)
    return step


def _close(writer: MetricsWriter | None, reporter: Any, sampler: Any) -> None:
    """Close the metrics writer, the tracker reporter and the vLLM sampler, those that exist."""
    if writer is not None:
        writer.close()
    if reporter is not None:
        reporter.close()
    if sampler is not None:
        sampler.close()


def _reporter(accelerator: Any, cfg: TrainConfig, output_dir: Path) -> Any:
    """The experiment-tracker reporter (``report_to``), on the main process only."""
    if not accelerator.is_main_process:
        return None
    return make_reporter(cfg.run.report_to, cfg.run.run_name or output_dir.name, output_dir, cfg.to_dict())


def accuracy_plateau(history: list[dict[str, float]], run: RunConfig) -> float | None:
    """The mean accuracy reward of the last ``run.early_stop_window`` steps of ``history`` when it
    has reached ``run.early_stop_accuracy`` (else None; always None when the knob is 0).

    The metrics are already means over processes (``trainer.step.context.mean_over_processes``), so every
    process decides the same at the same step. The window starts anew on a resume: only steps this
    process trained count.
    """
    window = history[-run.early_stop_window :]
    if not run.early_stop_accuracy or len(window) < run.early_stop_window:
        return None
    mean = sum(h[mk.ACCURACY_REWARD] for h in window) / len(window)
    return mean if mean >= run.early_stop_accuracy else None


def _clock_schedule(
    accelerator: Any, scheduler: Any, state: TrainerState, metrics: dict[str, float], started: float
) -> None:
    """After a step: the training time so far, the largest over processes (every process's rate,
    and so its weights, must agree), schedules the next step's updates (``max_train_seconds``) and
    goes into the step's ``metrics`` with the rate this step used; the schedule's progress goes
    into ``state``, for a checkpoint to resume it from."""
    train_s = max_over_processes(accelerator, time.perf_counter() - started)
    metrics[mk.TIME_TRAIN_S], metrics[mk.LEARNING_RATE] = train_s, scheduler.last_update_lr
    scheduler.set_train_seconds(train_s)
    state.schedule_progress = scheduler.progress()


def _out_of_time(accelerator: Any, cfg: TrainConfig, started: float) -> bool:
    """``max_train_seconds`` has passed on some process (so every process stops at the same step)."""
    limit = cfg.run.max_train_seconds
    return bool(limit) and all_agree(accelerator, time.perf_counter() - started >= limit)


def _early_end_reason(
    accelerator: Any, cfg: TrainConfig, history: list[dict[str, float]], started: float, step: int
) -> str | None:
    """Why the run ends after ``step`` before its planned last step (``max_train_seconds`` passed,
    or ``early_stop_accuracy`` reached), or None. The same on every process: the time check is a
    collective, and the accuracy window holds means over processes."""
    if _out_of_time(accelerator, cfg, started):
        return f"max_train_seconds {cfg.run.max_train_seconds:g} reached at step {step}"
    if (reached := accuracy_plateau(history, cfg.run)) is not None:
        return (
            f"mean accuracy reward {reached:.3f} over the last {cfg.run.early_stop_window} "
            f"steps reached early_stop_accuracy {cfg.run.early_stop_accuracy} at step {step}"
        )
    return None


def _draw(records: list[Any], cfg: TrainConfig, state: TrainerState, rank: int, world: int) -> list[Any]:
    """Process ``rank``'s share of the next per-step batch in the data order; moves ``state``'s
    epoch and position."""
    idx, state.epoch, state.position = next_batch(
        len(records), cfg.optim.per_device_train_batch_size * world, cfg.run.seed, state.epoch, state.position
    )
    return [records[i] for i in idx[rank::world]]


def _log_step(
    cfg: TrainConfig,
    step: int,
    is_last: bool,
    metrics: dict[str, float],
    micro: list[MicroBatch],
    writer: MetricsWriter | None,
    reporter: Any,
) -> None:
    """Metrics every ``logging_steps`` and of the first and the last step (``is_last``: the run
    ends after it, finished or ended early), rollouts every ``grpo_logging_steps``; only the main
    process has a writer."""
    if writer is None:
        return
    if step % cfg.run.logging_steps == 0 or step == 1 or is_last:
        writer.log_metrics(step, metrics)
        if reporter is not None:
            reporter.log(step, metrics)
    if step == 1 or step % cfg.run.grpo_logging_steps == 0:
        writer.log_rollouts(rollout_rows(step, micro))


def rollout_rows(step: int, micro: list[MicroBatch]) -> list[Rollout]:
    """The rollouts of one step as run-database rows (this process's share)."""
    rows: list[Rollout] = []
    for mb in micro:
        g = mb.rollout.group_size
        for i, (text, b) in enumerate(zip(mb.rollout.texts, mb.scores.breakdowns, strict=True)):
            record = mb.rollout.prompt.records[i // g]
            is_choice = record.is_multiple_choice
            rows.append(
                Rollout(
                    step=step,
                    prompt_id=str(record.id),
                    group_index=i % g,
                    question=record.question,
                    completion=text,
                    options=dict(record.options),
                    video_path=str(record.video or record.image or ""),
                    correct_letter=record.answer if is_choice else None,
                    problem_type=None if is_choice else record.problem_type,
                    reference=None if is_choice else record.answer,
                    rewards={name: values[i] for name, values in mb.scores.per_reward.items()},
                    think=b.think,
                    answer=b.answer,
                    format_reward=float(mb.scores.format[i]),
                    accuracy_reward=float(mb.scores.accuracy[i]),
                    total_reward=float(mb.scores.total[i]),
                    advantage=float(mb.advantages[i]),
                )
            )
    return rows


def _evaluate(
    accelerator: Any,
    model: Any,
    processor: Any,
    records: list[Any],
    cfg: TrainConfig,
    kwargs: dict[str, Any],
    cache: DecodeCache | None,
) -> EvalResult | None:
    """Greedy evaluation, every process answering its share (every process gets the result)."""
    if not records:
        return None
    policy = accelerator.unwrap_model(model)
    # As many answers per generate call as a rollout batch holds (B prompts x G completions): a size
    # the run already fits in memory.
    batch = cfg.optim.per_device_train_batch_size * cfg.grpo.grpo_sample_size
    result = evaluate(policy, processor, records, cfg.video, kwargs, batch, cache, processes=accelerator)
    if accelerator.is_main_process:
        logger.info(
            "eval: accuracy %.3f, format %.3f on %d records",
            result.accuracy,
            result.format_rate,
            result.num_records,
        )
    return result


def _mid_run_evaluation(
    accelerator: Any,
    cfg: TrainConfig,
    result: EvalResult | None,
    history: list[dict[str, float]],
    started: float,
    steps: int,
    writer: MetricsWriter | None,
    store: RunStore | None,
    held: RunHandle | None,
) -> tuple[EvalResult | None, int]:
    """After the evaluation ``result`` of the last step in ``history``: ``(result, that step)`` when
    it used up max_train_seconds, so the run ends there with it as its final evaluation (stored and
    logged then); else ``(None, steps)`` with its metrics added to the step's row and logged now.

    Ending one step later saved a second checkpoint a step after the first and evaluated nearly the
    same weights twice, one second apart."""
    step = int(history[-1]["step"])
    last = _end_early(accelerator, cfg, history, started, step, steps, store, held)
    if last == step:
        return result, last
    if result is not None:
        history[-1].update(_eval_metrics(result))
        if writer is not None:
            writer.log_metrics(step, _eval_metrics(result))
    return None, last


def _store_final_evaluation(
    store: RunStore,
    held: RunHandle,
    cfg: TrainConfig,
    result: EvalResult,
    writer: MetricsWriter | None,
    step: int,
) -> None:
    """The final evaluation, attached to the last checkpoint and logged at the last step."""
    ckpt = store.checkpoints(held.run.id)[-1]
    store.add_evaluation(
        ckpt.id,
        cfg.data.eval_dataset_use,
        lease=held.lease,
        accuracy=result.accuracy,
        format_rate=result.format_rate,
        results=result.records,
    )
    if writer is not None:
        writer.log_metrics(step, _eval_metrics(result))


def _eval_metrics(result: EvalResult) -> dict[str, float]:
    return {mk.EVAL_ACCURACY: result.accuracy, mk.EVAL_FORMAT_RATE: result.format_rate}


def _save(
    accelerator: Any,
    model: Any,
    processor: Any,
    state: TrainerState,
    cfg: TrainConfig,
    output_dir: Path,
    store: RunStore | None,
    held: RunHandle | None,
    metrics: dict[str, float],
) -> Path:
    on_removed = None
    if store is not None and held is not None:
        run_id, lease = held.run.id, held.lease
        on_removed = lambda paths: store.mark_checkpoints_deleted(run_id, map(str, paths), lease=lease)  # noqa: E731
    path = save_checkpoint(
        accelerator, model, processor, state, cfg.to_yaml(), output_dir, cfg.run.save_total_limit, on_removed
    )
    if store is not None and held is not None:
        store.add_checkpoint(held.run.id, state.step, str(path), metrics, lease=held.lease)
    return path
