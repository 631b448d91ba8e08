"""Start, abort, resume and re-find training subprocesses. The studio never blocks on training.

A training run is a ``python -m trainer.cli train --config <yaml> --attach_run <id>`` subprocess in
its own session (process group), writing stdout and stderr to ``<output_dir>/train.log``. Nothing
about it lives only in server memory: the run row (status, owner identity, heartbeat) is in the run
database, and the launch itself is a ``launched`` event whose message is JSON (pid, planned steps,
log and config paths). So a page reload or a studio restart finds every run again.

The supervisor writes no status itself. It asks the store's state machine (``trainer.rundb.states``):
Launch creates a ``queued`` run it holds, Resume queues an ended run by compare-and-set (of two
presses exactly one wins; a run whose owner lives is refused, naming it), and the trainer it starts
is handed the row and claims it. Abort records the request and signals the very process instance
that owns the run (pid + start time), escalating to SIGKILL after the grace period only if that same
process is still there. A trainer that died without writing its ending is ended by the store's reap
(``reap``), the one path that ends a dead owner's run.

A run whose config says ``launcher: ray`` is not a subprocess: the queued run is given to a Ray job
submitted to the cluster (``trainer.run.ray_launch.submit_run``), which owns it from then on. Its
launch event names the job; its log is the job's log; its liveness is the job's status (the reap
asks the head); Abort records the request, which its rank 0 reads at its next heartbeat (it saves,
then ends ``aborted``), and stops the job after the grace period if the run is still active then.
A restarted studio finds such runs as it finds the others: from the run database.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from studio import ray_supervision
from studio.context import StudioContext
from studio.environments import trainer_python
from studio.processes import signal_group, start_process, tail_text
from studio.run_records import ABORT_EVENT, LAUNCH_EVENT, LOG_FILE  # noqa: F401 - LOG_FILE: part of the API
from trainer.core.config import TrainConfig, build_config, merge
from trainer.core.errors import StudioError
from trainer.core.paths import REPO_ROOT
from trainer.run.launch import training_command
from trainer.rundb import Job, Owner, OwnerAlive, Run
from trainer.rundb.liveness import is_process_alive, this_host

logger = logging.getLogger(__name__)

DEFAULT_GRACE_S = 30.0

# (config file, run id, the config) -> argv of the trainer process.
TrainerCommand = Callable[[Path, int, TrainConfig], list[str]]


def default_trainer_command(config_path: Path, run_id: int, cfg: TrainConfig) -> list[str]:
    """The real trainer, run with this interpreter, or with one that has vLLM when the run samples
    with it (``studio.environments``; raises StudioError saying what to do when there is none);
    under ``accelerate launch`` when the config asks for several processes."""
    args = ["-m", "trainer.cli", "train", "--config", str(config_path), "--attach_run", str(run_id)]
    return training_command(trainer_python(cfg), cfg.run.num_processes, args)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... whichever is not taken yet."""
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


@dataclass(frozen=True)
class LaunchInfo:
    """What the studio recorded when it started a trainer (the ``launched`` event)."""

    pid: int
    host: str
    total_steps: int | None
    log_path: Path
    config_path: Path
    time: float
    ray_job_id: str | None = None  # a Ray run's job (pid is then 0)
    ray_address: str | None = None


@dataclass(frozen=True)
class Launched:
    run: Run
    pid: int
    config_path: Path
    log_path: Path
    total_steps: int | None


class Supervisor:
    """The studio's training API over one workspace. Holds no run state of its own."""

    def __init__(
        self,
        ctx: StudioContext,
        *,
        trainer_command: TrainerCommand = default_trainer_command,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.ctx = ctx
        self.trainer_command = trainer_command
        self.grace_s = grace_s

    # ---- starting -------------------------------------------------------------------------------

    def prepare(self, cfg: TrainConfig) -> TrainConfig:
        """The config as it will run: a unique run name, output_dir, this workspace and run DB."""
        taken = {r.name for r in self.ctx.store.list_runs(kind=None)}  # a registered model's too
        name = unique_name(cfg.run.run_name or time.strftime("grpo-%Y%m%d-%H%M%S"), taken)
        output_dir = cfg.run.output_dir or str(self.ctx.runs_dir / name)
        return build_config(
            merge(
                cfg.to_dict(),
                {
                    "run_name": name,
                    "output_dir": output_dir,
                    "workspace": cfg.data.workspace or str(self.ctx.workspace),
                    "db": cfg.run.db or self.ctx.db_url,
                },
            )
        )

    def start(self, cfg: TrainConfig) -> Launched:
        """Write the YAML, create the queued run row (held by this studio) and start the trainer on it."""
        cfg = self.prepare(cfg)
        total = planned_steps(cfg)
        me = Owner.current()
        run = self.ctx.store.create_run(
            cfg.run.run_name, config=cfg.to_dict(), output_dir=cfg.run.output_dir, owner=me
        )
        return self._launch(run, cfg, total, me)

    def resume(self, run_id: int) -> Launched:
        """Start a new attempt of the run on its output_dir from its latest checkpoint.

        Refused while the run's owner lives (naming it); of two resumes at once exactly one starts a
        trainer (the run is queued by compare-and-set before anything is spawned)."""
        from trainer.run.checkpoint import checkpoint_dirs

        run = self.ctx.store.get_run(run_id)
        if run.is_model:
            raise StudioError(
                f"#{run_id} {run.name} is a model registered for evaluation, not a training run: "
                "there is nothing to resume (its evaluations are in the Evaluate tab)"
            )
        if run.status == "finished":
            # It did all it was asked; a new attempt would only re-save its last step (and could turn
            # "finished" into "aborted", losing its "ended early" note).
            raise StudioError(
                f"run {run_id} finished: there is nothing to resume. To train it further, run "
                f"`vgrpo train --config {self.ctx.configs_dir / run.name}.yaml --resume_from_checkpoint "
                "latest --max_steps N` with N above its last step: a new attempt of the same run"
            )
        if run.is_active and not self.reap([run_id]):
            # Said early, for a clear message; the guarantee is request_resume's compare-and-set.
            who = run.owner.describe(run.started_at) if run.owner else "a trainer that is starting"
            raise StudioError(f"run {run_id} is {run.status}, owned by {who}; abort it before resuming")
        stored = self.ctx.store.get_config(run_id)
        if stored is None or not run.output_dir:
            raise StudioError(f"run {run_id} has no stored config or output_dir: it cannot be resumed")
        cfg = build_config(
            merge(dict(stored.config), {"resume_from_checkpoint": "latest", "output_dir": run.output_dir})
        )
        # A Ray run's output_dir is on the cluster's shared storage, which this machine may not mount.
        visible = not cfg.launch.is_ray or Path(run.output_dir).is_dir()
        if visible and not checkpoint_dirs(run.output_dir):
            raise StudioError(f"run {run_id}: no checkpoint in {run.output_dir} to resume from")
        me = Owner.current()
        try:
            run = self.ctx.store.request_resume(run_id, me)
        except OwnerAlive as exc:
            raise StudioError(f"{exc} (a run has one trainer at a time)") from exc
        return self._launch(run, cfg, planned_steps(cfg), me)

    def _launch(self, run: Run, cfg: TrainConfig, total: int | None, me: Owner) -> Launched:
        """Start the queued run ``me`` holds where its config says: a subprocess here, or a Ray job."""
        if cfg.launch.is_ray:
            submitted = ray_supervision.submit(self.ctx, run, cfg, me, total)
            return Launched(
                self.ctx.store.get_run(run.id), 0, submitted.config_path, submitted.log_path, total
            )
        return self._spawn(run, cfg, total, me)

    def _spawn(self, run: Run, cfg: TrainConfig, total: int | None, me: Owner) -> Launched:
        """Start the trainer for a queued run held by ``me`` and hand the run over to it."""
        config_path = self.ctx.configs_dir / f"{cfg.run.run_name}.yaml"
        log_path = Path(cfg.run.output_dir) / LOG_FILE

        def command() -> list[str]:
            self.ctx.configs_dir.mkdir(parents=True, exist_ok=True)
            config_path.write_text(cfg.to_yaml())
            return self.trainer_command(config_path, run.id, cfg)

        def reap(child: Owner, detail: str, tail: str) -> None:
            self.ctx.store.reap_dead_runs([run.id], exited=child, detail=detail, traceback=tail or None)

        owner = self._start_owned(
            f"run {run.id}",
            "trainer",
            command,
            log_path,
            fail=lambda error: self.ctx.store.end_run(run.id, me, "failed", error=error),
            # If the trainer claimed the run already, there is nothing left to hand over.
            hand_over=lambda child: self.ctx.store.hand_over_run(run.id, me, child),
            reap=reap,
        )
        info = {
            "pid": owner.pid,
            "host": owner.host,
            "total_steps": total,
            "log": str(log_path),
            "config": str(config_path),
        }
        self.ctx.store.add_event(run.id, LAUNCH_EVENT, json.dumps(info))
        return Launched(self.ctx.store.get_run(run.id), owner.pid, config_path, log_path, total)

    def _start_owned(
        self,
        name: str,
        what: str,
        command: Callable[[], Sequence[str]],
        log_path: Path,
        *,
        fail: Callable[[str], None],
        hand_over: Callable[[Owner], None],
        reap: Callable[[Owner, str, str], None],
    ) -> Owner:
        """Start ``command()`` for a row (run or job) this studio holds and hand the row over to it.

        A start that fails ends the row as failed (``fail``): nobody else would, its owner (this
        studio) being alive. At exit, ``reap(child, detail, log tail)`` ends that process's attempt if
        it never wrote its own ending (a newer attempt's owner is another identity)."""
        child: list[Owner] = []

        def on_exit(code: int) -> None:
            tail = tail_text(log_path, max_lines=40)
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
            detail = f"{what} exited with code {code}" + (f": {last}" if last else "")
            try:
                reap(child[0], detail, tail)
            except StudioError:
                logger.exception("%s: could not record the exit of %s", name, child[0].describe())

        try:
            owner = start_process(command(), log_path, env=self._env(), cwd=REPO_ROOT, on_exit=on_exit)
        except (OSError, psutil.Error, StudioError) as exc:
            fail(f"could not start the {what}: {exc}")
            raise StudioError(f"{name}: could not start the {what}: {exc}") from exc
        child.append(owner)
        hand_over(owner)
        return owner

    # ---- finding runs again ---------------------------------------------------------------------

    def launch_info(self, run_id: int) -> LaunchInfo | None:
        """The newest ``launched`` event of a run (None for runs started outside the studio)."""
        for event in reversed(self.ctx.store.events(run_id)):
            if event.kind == LAUNCH_EVENT:
                try:
                    data = json.loads(event.message)
                    return LaunchInfo(
                        pid=int(data["pid"]),
                        host=str(data.get("host", "")),
                        total_steps=data.get("total_steps"),
                        log_path=Path(data["log"]),
                        config_path=Path(data["config"]),
                        time=event.time,
                        ray_job_id=data.get("ray_job"),
                        ray_address=data.get("ray_address"),
                    )
                except (ValueError, KeyError, TypeError):
                    logger.warning("run %d: unreadable launch event %r", run_id, event.message)
                    return None
        return None

    def reap(self, run_ids: Sequence[int] | None = None) -> list[int]:
        """End the runs (and evaluation jobs) whose owner process is dead; returns the run ids.

        The studio's only call into the store's reap: reads never write, so a list refresh asks here."""
        reaped = self.ctx.store.reap_dead_runs(run_ids)
        self.ctx.store.reap_dead_jobs()
        return reaped

    def runs(self) -> list[Run]:
        """Every training run (no registered model), newest first, after ending those whose trainer
        is gone: the Monitor's and the Runs tab's list."""
        self.reap()
        return self.ctx.store.list_runs()

    def log_path(self, run: Run) -> Path | None:
        info = self.launch_info(run.id)
        if info is not None:
            return info.log_path
        return Path(run.output_dir) / LOG_FILE if run.output_dir else None

    def log_tail(self, run: Run, max_lines: int = 200) -> str:
        """The end of the trainer's log: its file here, or a Ray run's job log from the head."""
        if run.ray_job_id and run.ray_address:
            return ray_supervision.log_tail(run.ray_address, run.ray_job_id, max_lines)
        path = self.log_path(run)
        return tail_text(path, max_lines) if path is not None else ""

    def cluster_note(self, run: Run) -> str | None:
        """For an active Ray run, its job's status or that its cluster does not answer; else None."""
        return ray_supervision.cluster_note(run)

    # ---- stopping -------------------------------------------------------------------------------

    def abort(self, run_id: int, grace_s: float | None = None) -> int:
        """Record the abort, SIGTERM the owner's process group, SIGKILL it after ``grace_s`` if that
        same process (pid and start time) is still there. Returns the pid signalled.

        The trainer stops after its current step, saves a checkpoint and ends itself ``aborted``; a
        trainer killed outright is ended ``aborted`` by the reap."""
        run = self.ctx.store.request_stop(run_id)  # RunDBError "run 4 is finished: nothing to abort"
        if run.ray_job_id and run.ray_address:
            return ray_supervision.abort(
                self.ctx, run, self.grace_s if grace_s is None else grace_s, self.reap
            )
        owner = run.owner
        if owner is None or owner == Owner.current() or owner.host != this_host():
            # Not started yet, or elsewhere: the trainer reads the request at its next heartbeat.
            where = f"on {owner.host}" if owner is not None else "when it starts"
            self.ctx.store.add_event(run_id, ABORT_EVENT, f"recorded; the trainer stops {where}", "warning")
            return owner.pid if owner is not None else 0
        self.ctx.store.add_event(run_id, ABORT_EVENT, f"SIGTERM to {owner.describe()}", level="warning")

        def reap(exited: Owner | None, detail: str | None) -> None:
            self.ctx.store.reap_dead_runs([run_id], exited=exited, detail=detail)

        def killed() -> None:
            self.ctx.store.add_event(
                run_id, ABORT_EVENT, f"SIGKILL to {owner.describe()} after the grace period"
            )

        self._terminate(owner, self.grace_s if grace_s is None else grace_s, reap, killed)
        return owner.pid

    def _terminate(
        self,
        owner: Owner,
        grace_s: float,
        reap: Callable[[Owner | None, str | None], None],
        on_kill: Callable[[], None],
    ) -> None:
        """SIGTERM ``owner``'s group; after ``grace_s`` SIGKILL it if it is still that very process.
        ``reap`` (the store's reap of this row) ends the row once the process is gone."""
        if not signal_group(owner, signal.SIGTERM):
            reap(None, None)  # it was gone already: end it now
            return
        timer = threading.Timer(grace_s, self._escalate, args=(owner, reap, on_kill))
        timer.daemon = True
        timer.start()

    def _escalate(
        self, owner: Owner, reap: Callable[[Owner | None, str | None], None], on_kill: Callable[[], None]
    ) -> None:
        """After the grace period: SIGKILL the process the stop was for, if it is still that one."""
        if not signal_group(owner, signal.SIGKILL):
            return  # it ended (or the pid is another process now): nothing to do
        logger.warning("%s ignored SIGTERM; sent SIGKILL", owner.describe())
        on_kill()
        # Poll, not wait(): a wait here would steal the exit status from our own waiter thread.
        deadline, pause = time.monotonic() + 10.0, threading.Event()
        while is_process_alive(owner) and time.monotonic() < deadline:
            pause.wait(0.05)
        if not is_process_alive(owner):
            reap(owner, "killed after the grace period")

    # ---- evaluation jobs ------------------------------------------------------------------------

    def start_job(
        self,
        kind: str,
        command: Sequence[str],
        params: Mapping[str, Any],
        log_path: Path,
        *,
        run_id: int | None = None,
    ) -> Job:
        """Record a queued job (held by this studio), start ``command --job <id>`` for it, hand it over.

        The subprocess claims the job, reports progress and its result in the run database, so a
        reload or a studio restart finds it again (``jobs``)."""
        me = Owner.current()
        job = self.ctx.store.create_job(kind, params, run_id=run_id, owner=me, log_path=str(log_path))

        def reap(child: Owner, detail: str, tail: str) -> None:
            self.ctx.store.reap_dead_jobs([job.id], exited=child, detail=detail, traceback=tail or None)

        self._start_owned(
            f"{kind} job {job.id}",
            "job",
            lambda: [*command, "--job", str(job.id)],
            log_path,
            fail=lambda error: self.ctx.store.end_job(job.id, me, "failed", error=error),
            hand_over=lambda child: self.ctx.store.hand_over_job(job.id, me, child),
            reap=reap,
        )
        return self.ctx.store.get_job(job.id)

    def jobs(self, *, run_id: int | None = None, kind: str | None = None) -> list[Job]:
        """Jobs, newest first, after ending those whose process is gone."""
        self.ctx.store.reap_dead_jobs()
        return self.ctx.store.jobs(run_id=run_id, kind=kind)

    def cancel_job(self, job_id: int, grace_s: float | None = None) -> int:
        """Record the cancel and stop the job's process like ``abort`` stops a trainer; returns its pid."""
        job = self.ctx.store.request_job_stop(job_id)  # RunDBError "job 3 is finished: nothing to abort"
        owner = job.owner
        if owner is None or owner == Owner.current() or owner.host != this_host():
            return owner.pid if owner is not None else 0  # it reads the request at its next heartbeat

        def reap(exited: Owner | None, detail: str | None) -> None:
            self.ctx.store.reap_dead_jobs([job_id], exited=exited, detail=detail)

        self._terminate(owner, self.grace_s if grace_s is None else grace_s, reap, lambda: None)
        return owner.pid

    def _env(self) -> dict[str, str]:
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {
            "PYTHONPATH": pythonpath,
            "VGRPO_WORKSPACE": str(self.ctx.workspace),
            "VGRPO_DB": self.ctx.db_url,
        }


def planned_steps(cfg: TrainConfig) -> int | None:
    """How many steps the run will take (single process), for the progress bar and ETA.

    ``max_steps`` when set; else counted from the datasets (media existence only, no decoding).
    Unknown datasets raise DataError here, before anything starts.
    """
    from trainer.data import load_dataset_use, resolve_dataset_use
    from trainer.data.sampler import total_steps

    workspace = Path(cfg.data.workspace) if cfg.data.workspace else None
    resolve_dataset_use(cfg.data.dataset_use, workspace or Path.cwd())
    if cfg.optim.max_steps > 0:
        return cfg.optim.max_steps
    records = load_dataset_use(
        cfg.data.dataset_use, workspace or Path.cwd(), cfg.run.seed, check_videos=False
    )
    per_step = cfg.optim.per_device_train_batch_size * cfg.optim.gradient_accumulation_steps
    return total_steps(len(records), per_step, cfg.optim.num_train_epochs, cfg.optim.max_steps)
