"""The GRPO training loop: sample a group per question, score, compute advantages, update.

Read it top to bottom: ``train`` sets up (accelerate, model, reference, data, run database) and
runs ``grpo_step`` until done, saving checkpoints and evaluating on the way. The math lives in
``trainer.grpo``, the rewards in ``trainer.rewards``; this file only wires them together.
Everything distributed goes through accelerate (DDP, DeepSpeed, FSDP from ``accelerate launch``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer import grpo
from trainer import metrics_keys as mk
from trainer.checkpoint import TrainerState, load_checkpoint, read_state, resolve_resume, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import load_dataset_use
from trainer.data.video import DecodeCache
from trainer.dynamic_sampling import select_groups
from trainer.errors import ConfigError, DataError, StudioError
from trainer.evaluate import EvalResult, evaluate
from trainer.logprobs import completion_logprobs, completion_logprobs_and_entropy
from trainer.modeling import generation_kwargs, load_policy
from trainer.paths import default_db_url, default_workspace, resolve_repo_path
from trainer.reporting import make_reporter
from trainer.rollout import RolloutBatch, build_prompt_batch, generate_rollouts, shuffled_frames
from trainer.rollout_vllm import make_sampler
from trainer.rundb import MetricsWriter, Rollout, RunAborted, RunStore, run_lifecycle
from trainer.sampler import next_batch, total_steps
from trainer.sampler_mismatch import sampler_correction
from trainer.scoring import Scores, score_rollouts, temporal_bonus
from trainer.trainable import set_trainable, trainable_parameters

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


@dataclass
class MicroBatch:
    """One micro-batch of rollouts with everything the update needs."""

    rollout: RolloutBatch
    scores: Scores
    advantages: torch.Tensor  # (B*G,), already scaled by grpo_alpha inside the loss
    logp_old: torch.Tensor | None  # (B*G, T) when num_iterations > 1
    logp_ref: torch.Tensor | None  # (B*G, T) when grpo_beta > 0


class StopRequested:
    """SIGTERM sets a flag; the loop stops at the next step boundary, saves, and ends ``aborted``.

    Stopping between steps (not inside one) lets every process agree on where to stop and save a
    checkpoint that resumes cleanly."""

    def __init__(self) -> None:
        self.requested = False
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


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def dataset_fingerprints(spec: str, workspace: Path) -> dict[str, str]:
    """sha256 of each annotation file the run reads, so a run records exactly what it saw."""
    from trainer.data import resolve_dataset_use

    out = {}
    for entry, percent in resolve_dataset_use(spec, workspace):
        digest = hashlib.sha256(Path(entry.annotation_path).read_bytes()).hexdigest()
        out[f"{entry.name}%{percent:g}"] = digest
    return out


def train(
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
    attach_run_id: int | None = None,
) -> TrainOutcome:
    """Run GRPO training as ``cfg`` says. ``attach_run_id`` continues a run row the studio created
    (status queued) instead of creating one. Returns where the results are."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # cpu=True without CUDA: that is what makes accelerate run several CPU processes with gloo
    # (MULTI_CPU) instead of silently training each process alone.
    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.model.bf16 else "no", cpu=not torch.cuda.is_available()
    )
    set_seed(cfg.run.seed)
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    workspace = Path(cfg.data.workspace) if cfg.data.workspace else default_workspace()
    run_name = cfg.run.run_name or time.strftime("grpo-%Y%m%d-%H%M%S")
    output_dir = Path(cfg.run.output_dir) if cfg.run.output_dir else workspace / "outputs" / run_name
    resume_path = resolve_resume(cfg.run.resume_from_checkpoint, output_dir)

    store: RunStore | None = None
    run_id: int | None = None
    with ExitStack() as stack:
        if accelerator.is_main_process:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / "train_config.yaml").write_text(cfg.to_yaml())
            store = stack.enter_context(RunStore(cfg.run.db or default_db_url(workspace)))
            run_id = _open_run(store, cfg, run_name, output_dir, workspace, attach_run_id, resume_path)
            # SIGTERM is handled by StopRequested (stop at a step boundary, save, then abort).
            stack.enter_context(run_lifecycle(store, run_id, handle_sigterm=False))
        # Installed before the model and data load, so an abort while loading also ends cleanly.
        stop = stack.enter_context(StopRequested())
        try:
            return _train(accelerator, cfg, workspace, output_dir, store, run_id, resume_path, progress, stop)
        except torch.OutOfMemoryError as exc:
            raise StudioError(f"{OOM_HINT} ({exc})") from exc


def _open_run(
    store: RunStore,
    cfg: TrainConfig,
    run_name: str,
    output_dir: Path,
    workspace: Path,
    attach_run_id: int | None,
    resume_path: Path | None,
) -> int:
    fingerprints = dataset_fingerprints(cfg.data.dataset_use, workspace)
    if attach_run_id is not None:
        store.set_config(attach_run_id, cfg.to_dict(), fingerprints)
        return attach_run_id
    if resume_path is not None:
        # A resumed run keeps writing into the run it came from (metric writes are idempotent).
        state = read_state(resume_path)
        if state.run_id:
            try:
                store.get_run(int(state.run_id), reap=False)
                store.set_config(int(state.run_id), cfg.to_dict(), fingerprints)
                store.add_event(int(state.run_id), "resumed", f"from {resume_path}")
                return int(state.run_id)
            except StudioError:
                logger.warning(
                    "run %s of %s is not in this database: starting a new run", state.run_id, resume_path
                )
    run = store.create_run(
        run_name, config=cfg.to_dict(), dataset_fingerprints=fingerprints, output_dir=str(output_dir)
    )
    return run.id


def _train(
    accelerator: Any,
    cfg: TrainConfig,
    workspace: Path,
    output_dir: Path,
    store: RunStore | None,
    run_id: int | None,
    resume_path: Path | None,
    progress: ProgressFn | None,
    stop: StopRequested,
) -> TrainOutcome:
    from transformers import get_scheduler

    g = cfg.grpo
    cache = DecodeCache(cfg.data.video_cache_mb) if cfg.data.video_cache_mb else None
    # ---- data --------------------------------------------------------------------------------
    records = load_dataset_use(cfg.data.dataset_use, workspace, cfg.run.seed)
    eval_records = (
        load_dataset_use(cfg.data.eval_dataset_use, workspace, cfg.run.seed)
        if cfg.data.eval_dataset_use
        else []
    )
    if cfg.data.eval_max_records:
        eval_records = eval_records[: cfg.data.eval_max_records]
    world = accelerator.num_processes
    per_step = cfg.optim.per_device_train_batch_size * cfg.optim.gradient_accumulation_steps * world
    steps = total_steps(len(records), per_step, cfg.optim.num_train_epochs, cfg.optim.max_steps)

    # ---- model, reference, optimiser ----------------------------------------------------------
    _check_reference_loading(g.grpo_beta > 0 and not cfg.model.lora_enable)
    dtype = "bf16" if cfg.model.bf16 else None
    model, processor = load_policy(
        resolve_repo_path(cfg.model.model_name_or_path),
        dtype=dtype,
        attn_implementation=cfg.model.attn_implementation,
    )
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    ref_model = None
    if g.grpo_beta > 0 and not cfg.model.lora_enable:
        # The frozen reference is the policy as loaded (the GRPO paper's pi_ref).
        ref_model = copy.deepcopy(model).eval().requires_grad_(False).to(accelerator.device)
    model = set_trainable(model, cfg.model)
    optimizer = torch.optim.AdamW(
        trainable_parameters(model),
        lr=cfg.optim.learning_rate,
        betas=(cfg.optim.adam_beta1, cfg.optim.adam_beta2),
        weight_decay=cfg.optim.weight_decay,
    )
    updates = steps * g.num_iterations
    scheduler = get_scheduler(
        cfg.optim.lr_scheduler_type,
        optimizer,
        num_warmup_steps=int(cfg.optim.warmup_ratio * updates),
        num_training_steps=updates,
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    sample_kwargs = generation_kwargs(
        processor, g.generation_max_length, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k
    )
    greedy_kwargs = generation_kwargs(processor, g.generation_max_length, do_sample=False)
    if accelerator.num_processes > 1 and accelerator.distributed_type.name in ("DEEPSPEED", "FSDP"):
        # Sharded weights are gathered layer by layer in every forward: all processes must keep
        # stepping until the longest generation anywhere is done, or the collectives hang.
        sample_kwargs["synced_gpus"] = greedy_kwargs["synced_gpus"] = True

    state = TrainerState(run_id=str(run_id or ""), total_steps=steps)
    if resume_path is not None:
        resumed = load_checkpoint(accelerator, resume_path)
        state.step, state.epoch, state.position = resumed.step, resumed.epoch, resumed.position
        logger.info("resumed from %s at step %d", resume_path, state.step)
    # rollout_backend: generate_rollouts, or a vLLM engine that follows the policy's weights.
    sampler = make_sampler(cfg, processor, accelerator)
    sync_sampler = getattr(sampler, "load_weights", None)
    if sync_sampler is not None:
        sync_sampler(accelerator.unwrap_model(model))

    writer = MetricsWriter(store, run_id) if store is not None and run_id is not None else None
    reporter = (
        make_reporter(cfg.run.report_to, cfg.run.run_name or output_dir.name, output_dir, cfg.to_dict())
        if accelerator.is_main_process
        else None
    )
    history: list[dict[str, float]] = []
    final_ckpt: Path | None = None
    eval_result: EvalResult | None = None
    started = time.perf_counter()

    def draw() -> list[Any]:
        """This process's share of the next per-step batch in the data order (moves the position)."""
        idx, state.epoch, state.position = next_batch(
            len(records),
            cfg.optim.per_device_train_batch_size * world,
            cfg.run.seed,
            state.epoch,
            state.position,
        )
        return [records[i] for i in idx[accelerator.process_index :: world]]

    try:
        if _all_agree(accelerator, stop.requested):
            raise RunAborted("stopped by SIGTERM before the first step")
        while state.step < steps:
            step_start = time.perf_counter()
            micro_records = [draw() for _ in range(cfg.optim.gradient_accumulation_steps)]
            metrics, micro = grpo_step(
                accelerator,
                model,
                ref_model,
                processor,
                micro_records,
                cfg,
                cache,
                optimizer,
                scheduler,
                sample_kwargs,
                refill=draw,
                sampler=sampler,
            )
            if sync_sampler is not None:
                sync_sampler(accelerator.unwrap_model(model))
            state.step += 1
            metrics[mk.TIME_STEP_S] = time.perf_counter() - step_start
            metrics[mk.LEARNING_RATE] = scheduler.get_last_lr()[0]
            history.append({"step": state.step, **metrics})
            if writer is not None:
                if state.step % cfg.run.logging_steps == 0 or state.step in (1, steps):
                    writer.log_metrics(state.step, metrics)
                    if reporter is not None:
                        reporter.log(state.step, metrics)
                if state.step == 1 or state.step % cfg.run.grpo_logging_steps == 0:
                    writer.log_rollouts(rollout_rows(state.step, micro))
            if progress is not None and accelerator.is_main_process:
                progress(state.step, steps, metrics)

            should_stop = _all_agree(accelerator, stop.requested)
            out_of_time = bool(cfg.run.max_train_seconds) and _all_agree(
                accelerator, time.perf_counter() - started >= cfg.run.max_train_seconds
            )
            if out_of_time:
                logger.info("max_train_seconds reached at step %d: finishing", state.step)
                steps = state.step
            if cfg.run.eval_steps and state.step % cfg.run.eval_steps == 0 and state.step < steps:
                result = _evaluate(accelerator, model, processor, eval_records, cfg, greedy_kwargs, cache)
                if result is not None:
                    history[-1].update(
                        {mk.EVAL_ACCURACY: result.accuracy, mk.EVAL_FORMAT_RATE: result.format_rate}
                    )
                if result is not None and writer is not None:
                    writer.log_metrics(
                        state.step,
                        {mk.EVAL_ACCURACY: result.accuracy, mk.EVAL_FORMAT_RATE: result.format_rate},
                    )
            if state.step % cfg.run.save_steps == 0 or state.step == steps or should_stop:
                final_ckpt = _save(
                    accelerator, model, processor, state, cfg, output_dir, store, run_id, metrics
                )
            if should_stop:
                raise RunAborted("stopped by SIGTERM after saving a checkpoint")
        eval_result = _evaluate(accelerator, model, processor, eval_records, cfg, greedy_kwargs, cache)
        if eval_result is not None and store is not None and run_id is not None and final_ckpt is not None:
            ckpt = store.checkpoints(run_id)[-1]
            store.add_evaluation(
                ckpt.id,
                cfg.data.eval_dataset_use,
                accuracy=eval_result.accuracy,
                format_rate=eval_result.format_rate,
                results=eval_result.records,
            )
            if writer is not None:
                writer.log_metrics(
                    state.step,
                    {mk.EVAL_ACCURACY: eval_result.accuracy, mk.EVAL_FORMAT_RATE: eval_result.format_rate},
                )
    finally:
        if writer is not None:
            writer.close()
        if reporter is not None:
            reporter.close()
    return TrainOutcome(
        run_id, output_dir, state.step, final_ckpt, eval_result, history, accelerator.unwrap_model(model)
    )


def _check_reference_loading(needs_reference: bool) -> None:
    """Refuse FSDP's "cpu ram efficient loading" when a separate reference model is needed.

    With it, transformers loads the checkpoint on local rank 0 only and leaves the other ranks'
    weights uninitialised for FSDP to broadcast when the policy is prepared; the frozen reference is
    a copy taken before that, never broadcast, so on those ranks it would be garbage and the KL
    silently wrong. (The same env vars transformers reads, so the check matches what it does.)
    """
    from accelerate.utils import str_to_bool

    fsdp = str_to_bool(os.environ.get("ACCELERATE_USE_FSDP", "false"))
    ram_efficient = str_to_bool(os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false"))
    if needs_reference and fsdp and ram_efficient:
        raise ConfigError(
            "FSDP with fsdp_cpu_ram_efficient_loading: true loads the weights on the first process "
            "only, so the frozen reference model (grpo_beta > 0) would be uninitialised on the others. "
            "Set fsdp_cpu_ram_efficient_loading: false in the accelerate config "
            "(configs/accelerate_fsdp.yaml does), or use LoRA (lora_enable: the reference is then the "
            "base model), or grpo_beta: 0."
        )


def _all_agree(accelerator: Any, flag: bool) -> bool:
    """True on every process when any process saw the flag (so all stop at the same step)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def grpo_step(
    accelerator: Any,
    model: Any,
    ref_model: Any,
    processor: Any,
    micro_records: list[list[Any]],
    cfg: TrainConfig,
    cache: DecodeCache | None,
    optimizer: Any,
    scheduler: Any,
    sample_kwargs: dict[str, Any],
    refill: Callable[[], list[Any]] | None = None,
    sampler: Callable[..., RolloutBatch] = generate_rollouts,
) -> tuple[dict[str, float], list[MicroBatch]]:
    """One global step: rollouts for every micro-batch, then ``num_iterations`` policy updates.

    With ``dynamic_sampling``, groups whose rewards all agree are dropped and ``refill()`` (this
    process's share of the next questions in the data order) is sampled, up to
    ``max_sampling_rounds`` rounds per micro-batch, until the micro-batch is full again.
    """
    g = cfg.grpo
    policy = accelerator.unwrap_model(model)
    t0 = time.perf_counter()
    micro: list[MicroBatch] = []
    gen_s = score_s = 0.0
    temporal_stats: list[dict[str, float]] = []
    rounds = 0
    sampled_scores: list[Scores] = []  # every round's, before dynamic sampling drops groups
    max_rounds = g.max_sampling_rounds if g.dynamic_sampling else 1
    for recs in micro_records:
        need, have = len(recs), 0
        for round_ in range(1, max_rounds + 1):
            # A process whose micro-batch is already full sits a round out, unless generation is
            # collective (sharded weights, synced_gpus) and every process must take part.
            if have < need or sample_kwargs.get("synced_gpus"):
                rounds += 1
                rollout, scores, seconds = _sample_and_score(
                    policy, processor, recs, cfg, cache, sample_kwargs, sampler
                )
                gen_s, score_s = gen_s + seconds[0], score_s + seconds[1]
                if scores.temporal is not None:
                    temporal_stats.append(scores.temporal)
                sampled_scores.append(scores)
                spread = grpo.groups_with_spread(scores.total, g.grpo_sample_size)
                keep = list(range(rollout.prompt.size))
                if g.dynamic_sampling:
                    keep = spread[: max(need - have, 0)]
                    if not keep and have == 0 and round_ == max_rounds:
                        # Nothing informative in any round: train on the last one anyway (zero
                        # advantages, only the KL and entropy terms) so this process still takes
                        # part in the update.
                        keep = list(range(rollout.prompt.size))
                    if keep and len(keep) < rollout.prompt.size:
                        rollout, scores = select_groups(rollout, scores, keep)
                if keep:
                    have += len(keep)
                    micro.append(_micro_batch(policy, ref_model, rollout, scores, cfg))
            # Every process runs the same rounds and draws the same refills (one data position).
            if round_ == max_rounds or not _all_agree(accelerator, have < need):
                break
            if refill is None:
                raise ValueError("dynamic_sampling needs a refill function for fresh questions")
            recs = refill()

    t_backward = time.perf_counter()
    total_groups = sum(mb.rollout.prompt.size for mb in micro)
    stats_sum: dict[str, float] = {}
    n_updates = 0
    grad_norm = 0.0
    for _ in range(g.num_iterations):
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            with nullcontext() if last else accelerator.no_sync(model):
                logp, entropy = completion_logprobs_and_entropy(model, mb.rollout, g.temperature)
                mask = mb.rollout.completion_mask.to(logp.device)
                advantages, mismatch = sampler_correction(
                    mb.advantages.to(logp.device), logp, mb.logp_old, mb.rollout.sampler_logprobs, mask,
                    g.vllm_importance_sampling_cap,
                )  # fmt: skip
                loss, stats = grpo.grpo_loss(
                    logp,
                    mb.logp_old.to(logp.device) if mb.logp_old is not None else None,
                    mb.logp_ref.to(logp.device) if mb.logp_ref is not None else None,
                    advantages,
                    mask,
                    alpha=g.grpo_alpha,
                    beta=g.grpo_beta,
                    eps_low=g.epsilon,
                    eps_high=g.epsilon_high or g.epsilon,
                    aggregation=g.loss_type,
                    max_completion_length=max(g.generation_max_length, mask.shape[1]),
                    entropy=entropy,
                    entropy_coeff=g.entropy_coeff,
                )
                # Each micro-batch weighs as many groups as it holds (dynamic sampling makes them differ).
                scaled = (
                    loss / len(micro)
                    if not g.dynamic_sampling
                    else loss * mb.rollout.prompt.size / total_groups
                )
                _backward(accelerator, scaled, last)
            for key, value in {**stats, **mismatch}.items():
                stats_sum[key] = stats_sum.get(key, 0.0) + float(value)
            stats_sum["loss"] = stats_sum.get("loss", 0.0) + float(loss.detach())
            n_updates += 1
        if cfg.optim.max_grad_norm > 0:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    backward_s = time.perf_counter() - t_backward

    # Rewards over everything sampled: what the policy does, not what dynamic sampling kept.
    fmt = torch.cat([sc.format for sc in sampled_scores])
    acc = torch.cat([sc.accuracy for sc in sampled_scores])
    total = torch.cat([sc.total for sc in sampled_scores])
    adv = torch.cat([mb.advantages for mb in micro])
    lengths = torch.cat([mb.rollout.lengths for mb in micro]).float()
    # Over every group sampled, before dynamic sampling drops the flat ones.
    zero_std = grpo.zero_std_fraction(total, g.grpo_sample_size)
    generated_tokens = float(lengths.sum())
    local = {
        mk.FORMAT_REWARD: float(fmt.mean()),
        mk.ACCURACY_REWARD: float(acc.mean()),
        mk.TOTAL_REWARD: float(total.mean()),
        # The mean advantage is 0 by construction; its mean size says how strong the signal is.
        mk.ADVANTAGE: float((g.grpo_alpha * adv).abs().mean()),
        mk.REWARD_STD: float(total.view(-1, g.grpo_sample_size).std(dim=1).mean()),
        mk.ZERO_STD_FRACTION: zero_std,
        mk.SAMPLING_ROUNDS: rounds / len(micro_records),
        mk.POLICY_SEQ_LOG_PROB: stats_sum["policy_seq_log_prob"] / n_updates,
        mk.KL_DIV: stats_sum["kl"] / n_updates,
        mk.CLIP_RATIO: stats_sum["clip_ratio"] / n_updates,
        mk.ENTROPY: stats_sum["entropy"] / n_updates,
        mk.LOSS: stats_sum["loss"] / n_updates,
        mk.GRAD_NORM: grad_norm,
        mk.COMPLETION_LENGTH: float(lengths.mean()),
        mk.TIME_GENERATE_S: gen_s,
        mk.TIME_SCORE_S: score_s,
        mk.TIME_BACKWARD_S: backward_s,
        mk.TOKENS_PER_S: generated_tokens / max(time.perf_counter() - t0, 1e-9),
    }
    for key, name in (("sampler_logp_diff", mk.SAMPLER_LOGP_DIFF), ("is_weight", mk.IS_WEIGHT)):
        if key in stats_sum:
            local[name] = stats_sum[key] / n_updates
    if temporal_stats:
        for key, name in (
            ("acc_ordered", mk.TEMPORAL_ACC_ORDERED),
            ("acc_shuffled", mk.TEMPORAL_ACC_SHUFFLED),
            ("bonus_rate", mk.TEMPORAL_BONUS_RATE),
        ):
            local[name] = sum(s[key] for s in temporal_stats) / len(temporal_stats)
    if torch.cuda.is_available():
        local[mk.PEAK_MEMORY_GB] = torch.cuda.max_memory_allocated() / 2**30
    return _mean_over_processes(accelerator, local), micro


def _backward(accelerator: Any, loss: torch.Tensor, last: bool) -> None:
    """``accelerator.backward``, telling DeepSpeed which micro-batch ends the step.

    Outside ``accelerator.accumulate`` accelerate's ``sync_gradients`` stays True, and under DeepSpeed
    every backward then runs ``engine.step()`` (an optimiser update per micro-batch). A step here has
    a variable number of micro-batches (gradient accumulation, dynamic sampling), so the earlier ones
    are marked as accumulation only; DDP and FSDP get the same from ``no_sync``.
    """
    if last or accelerator.distributed_type.name != "DEEPSPEED":
        accelerator.backward(loss)
        return
    state = accelerator.gradient_state
    state._set_sync_gradients(False)  # no public setter; accumulate() uses the same call
    try:
        accelerator.backward(loss)
    finally:
        state._set_sync_gradients(True)


def _sample_and_score(
    policy: Any,
    processor: Any,
    recs: list[Any],
    cfg: TrainConfig,
    cache: DecodeCache | None,
    sample_kwargs: dict[str, Any],
    sampler: Callable[..., RolloutBatch] = generate_rollouts,
) -> tuple[RolloutBatch, Scores, tuple[float, float]]:
    """G completions per question, scored (with the T-GRPO bonus when on); returns the rollouts,
    their scores and the seconds spent (generating, scoring)."""
    g = cfg.grpo
    prompt, recs = _prompt_batch(processor, recs, cfg, cache)
    rollout = sampler(policy, processor, prompt, g.grpo_sample_size, sample_kwargs)
    gen_s = rollout.seconds
    t_score = time.perf_counter()
    scores = score_rollouts(
        rollout.texts, recs, g.grpo_sample_size, g.format_reward_weight, g.accuracy_reward_weight
    )
    if g.temporal_grpo:
        shuffled_prompt = build_prompt_batch(
            processor,
            recs,
            cfg.video,
            cache=cache,
            video_transform=shuffled_frames(
                torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))
            ),
        )
        shuffled = sampler(policy, processor, shuffled_prompt, g.grpo_sample_size, sample_kwargs)
        gen_s += shuffled.seconds
        scores = temporal_bonus(
            scores,
            shuffled.texts,
            recs,
            g.grpo_sample_size,
            g.temporal_margin,
            g.temporal_bonus,
            g.format_reward_weight,
            g.accuracy_reward_weight,
        )
    return rollout, scores, (gen_s, time.perf_counter() - t_score)


def _micro_batch(
    policy: Any, ref_model: Any, rollout: RolloutBatch, scores: Scores, cfg: TrainConfig
) -> MicroBatch:
    """Advantages and the no-grad log-probs (rollout policy, reference) an update needs."""
    g = cfg.grpo
    advantages = grpo.group_advantages(scores.total, g.grpo_sample_size, scale=g.scale_rewards)
    with torch.no_grad():
        logp_old = completion_logprobs(policy, rollout, g.temperature) if g.num_iterations > 1 else None
        logp_ref = None
        if g.grpo_beta > 0:
            logp_ref = _reference_logprobs(ref_model, policy, rollout, g.temperature)
    return MicroBatch(rollout, scores, advantages, logp_old, logp_ref)


def _prompt_batch(
    processor: Any, records: list[Any], cfg: TrainConfig, cache: DecodeCache | None
) -> tuple[Any, list[Any]]:
    """The prompt batch of ``records``; a record whose video cannot be decoded is dropped with a
    warning naming it, so one corrupt file does not end a long run."""
    try:
        return build_prompt_batch(processor, records, cfg.video, cache=cache), records
    except DataError:
        kept = []
        for record in records:
            try:
                build_prompt_batch(processor, [record], cfg.video, cache=cache)
                kept.append(record)
            except DataError as exc:
                logger.warning("skipping %s: %s", record.location, exc)
        if not kept:
            raise
        return build_prompt_batch(processor, kept, cfg.video, cache=cache), kept


def _reference_logprobs(
    ref_model: Any, policy: Any, rollout: RolloutBatch, temperature: float
) -> torch.Tensor:
    if ref_model is not None:
        return completion_logprobs(ref_model, rollout, temperature)
    # LoRA: the reference is the base model, i.e. the policy with its adapters switched off.
    with policy.disable_adapter():
        return completion_logprobs(policy, rollout, temperature)


def _mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], device=accelerator.device, dtype=torch.float64)
    t = accelerator.reduce(t, reduction="mean")
    return dict(zip(keys, t.tolist(), strict=True))


def rollout_rows(step: int, micro: list[MicroBatch]) -> list[Rollout]:
    """The rollouts of one step as run-database rows (this process's share)."""
    rows: list[Rollout] = []
    for mb in micro:
        g = mb.rollout.group_size
        for i, (text, b) in enumerate(zip(mb.rollout.texts, mb.scores.breakdowns, strict=True)):
            record = mb.rollout.prompt.records[i // g]
            rows.append(
                Rollout(
                    step=step,
                    prompt_id=str(record.id),
                    group_index=i % g,
                    question=record.question,
                    completion=text,
                    options=dict(record.options),
                    video_path=str(record.video or record.image or ""),
                    correct_letter=record.answer,
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
    """Greedy evaluation on the main process (the others wait)."""
    if not records:
        return None
    result = None
    if accelerator.is_main_process:
        result = evaluate(accelerator.unwrap_model(model), processor, records, cfg.video, kwargs, cache=cache)
        logger.info(
            "eval: accuracy %.3f, format %.3f on %d records",
            result.accuracy,
            result.format_rate,
            result.num_records,
        )
    accelerator.wait_for_everyone()
    return result


def _save(
    accelerator: Any,
    model: Any,
    processor: Any,
    state: TrainerState,
    cfg: TrainConfig,
    output_dir: Path,
    store: RunStore | None,
    run_id: int | None,
    metrics: dict[str, float],
) -> Path:
    path = save_checkpoint(
        accelerator, model, processor, state, cfg.to_yaml(), output_dir, cfg.run.save_total_limit
    )
    if store is not None and run_id is not None:
        store.add_checkpoint(run_id, state.step, str(path), metrics)
    return path
