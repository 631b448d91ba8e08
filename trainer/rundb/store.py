"""The run store: the only place that opens database sessions. It hands out frozen dataclasses.

    store = RunStore()                       # the workspace's runs.db, migrated to head on open
    run = store.create_run("motion-grpo", config=cfg)
    store.log_metrics(run.id, step, {"grpo/kl_div": 0.01})
    store.metrics_since(run.id, after_step=120)   # one indexed query, for live plots

Trainers write through ``writer.MetricsWriter`` (buffered, off the training thread) and mark their
lifetime with ``lifecycle.run_lifecycle``. Status changes follow ``states.py`` and are written only
by the compare-and-set methods of ``owned.py`` (mixed in here, with the jobs of ``jobs.py``); reads
never write: a dead owner's row is ended by an explicit ``reap_dead_runs`` / ``reap_dead_jobs``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from trainer.core.errors import RunDBError
from trainer.core.paths import default_db_url
from trainer.rundb import rows, schema, states
from trainer.rundb.artifacts import ArtifactRows
from trainer.rundb.entities import (
    MODEL_RUN,
    RUN_KINDS,
    TRAIN_RUN,
    DeletedRows,
    Lease,
    MetricPoint,
    MetricSeries,
    Rollout,
    Run,
    RunConfig,
)
from trainer.rundb.jobs import JobRows
from trainer.rundb.liveness import Owner
from trainer.rundb.models import (
    SqlAttempt,
    SqlCheckpoint,
    SqlEvaluation,
    SqlEvent,
    SqlJob,
    SqlMetric,
    SqlRollout,
    SqlRun,
    SqlRunConfig,
    SqlRunWorker,
)
from trainer.rundb.ray_runs import RayRunRows
from trainer.rundb.runs import RunRows

logger = logging.getLogger(__name__)

ENDED_STATUSES = states.ENDED
_METRICS = SqlMetric.__table__
_ROLLOUTS = SqlRollout.__table__
_ROLLOUT_FIELDS = [name for name in Rollout.__dataclass_fields__ if name != "step"]


class RunStore(RunRows, RayRunRows, JobRows, ArtifactRows):
    """Runs, metrics, rollouts, checkpoints, evaluations and events in one SQLAlchemy database.

    ``url`` defaults to ``trainer.core.paths.default_db_url()``. Safe to share between threads; open one
    per process (it holds a connection pool).
    """

    def __init__(self, url: str | None = None, *, busy_timeout_s: float = 30.0, migrate: bool = True) -> None:
        self.url = url or default_db_url()
        self._engine = schema.make_engine(self.url, busy_timeout_s)
        if migrate:
            schema.upgrade(self._engine)
        self._read = sessionmaker(self._engine, expire_on_commit=False, info={"write": False})
        self._write = sessionmaker(
            self._engine.execution_options(**{schema.WRITE_OPTION: True}),
            expire_on_commit=False,
            info={"write": True},
        )
        for maker in (self._read, self._write):
            event.listen(maker, "do_orm_execute", rows.guard_read_only)
            event.listen(maker, "before_flush", rows.guard_flush)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({self._engine.url!r})"

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """One transaction: committed on success (write) or rolled back; DB errors become RunDBError."""
        sess = (self._write if write else self._read)()
        try:
            yield sess
            if write:
                sess.commit()
            else:
                sess.rollback()
        except SQLAlchemyError as exc:
            sess.rollback()
            raise RunDBError(f"run database {self._engine.url!r}: {exc}") from exc
        except BaseException:
            sess.rollback()
            raise
        finally:
            sess.close()

    # ---- runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        dataset_fingerprints: Mapping[str, Any] | None = None,
        output_dir: str | None = None,
        resumed_from: int | None = None,
        owner: Owner | None = None,
        status: str | None = None,
        kind: str = TRAIN_RUN,
    ) -> Run:
        """A new run (and its config row when a config is given): a training run, ``queued`` and held
        by ``owner`` (the process that will start its trainer) when given; or, ``kind="model"``, a
        model registered from outside (``vgrpo eval`` of a base model), ``finished`` from the start
        and never trained. ``status`` finished for a training run records one trained elsewhere."""
        if not name.strip():
            raise RunDBError("run name must not be empty")
        if kind not in RUN_KINDS:
            raise RunDBError(f"run {name!r}: kind {kind!r} is not one of {RUN_KINDS}")
        status = status or (states.FINISHED if kind == MODEL_RUN else states.QUEUED)
        if kind == MODEL_RUN and status != states.FINISHED:
            raise RunDBError(f"run {name!r}: a registered model is created finished, not {status!r}")
        states.check_initial(states.RUN, status)
        now = time.time()
        with self.session(write=True) as s:
            row = SqlRun(
                name=name,
                kind=kind,
                status=status,
                created_at=now,
                ended_at=now if status in states.ENDED else None,
                output_dir=output_dir,
                resumed_from=resumed_from,
            )
            if owner is not None:
                row.pid, row.pid_create_time, row.host = owner.pid, owner.create_time, owner.host
            s.add(row)
            s.flush()
            if config is not None or dataset_fingerprints is not None:
                s.add(
                    SqlRunConfig(
                        run_id=row.id,
                        config=dict(config or {}),
                        dataset_fingerprints=dict(dataset_fingerprints or {}),
                    )
                )
            return rows.to_run(row)

    def set_config(
        self,
        run_id: int,
        config: Mapping[str, Any],
        dataset_fingerprints: Mapping[str, Any] | None = None,
        *,
        lease: Lease | None = None,
    ) -> None:
        with self.session(write=True) as s:
            self._fence_or_require(s, run_id, lease)
            s.merge(
                SqlRunConfig(
                    run_id=run_id, config=dict(config), dataset_fingerprints=dict(dataset_fingerprints or {})
                )
            )

    def get_config(self, run_id: int) -> RunConfig | None:
        with self.session() as s:
            row = s.get(SqlRunConfig, run_id)
            return None if row is None else RunConfig(run_id, row.config, row.dataset_fingerprints)

    def get_run(self, run_id: int) -> Run:
        with self.session() as s:
            return rows.to_run(self._require(s, run_id))

    def list_runs(self, *, status: str | None = None, kind: str | None = TRAIN_RUN) -> list[Run]:
        """The training runs, newest first; ``kind="model"`` the registered models instead, ``None``
        both. Reads never write: dead owners are ended by ``reap_dead_runs``."""
        with self.session() as s:
            query = select(SqlRun).order_by(SqlRun.id.desc())
            if status is not None:
                query = query.where(SqlRun.status == status)
            if kind is not None:
                query = query.where(SqlRun.kind == kind)
            return [rows.to_run(row) for row in s.scalars(query)]

    def resolve_run(self, ref: str | int) -> Run:
        """A run by id, or by name when that name is unique."""
        text = str(ref).strip()
        with self.session() as s:
            if text.isdigit() and (row := s.get(SqlRun, int(text))) is not None:
                found = row.id
            else:
                matches = list(s.scalars(select(SqlRun).where(SqlRun.name == text)))
                if not matches:
                    raise RunDBError(f"no run with id or name {text!r} in {self.url}")
                if len(matches) > 1:
                    ids = ", ".join(str(r.id) for r in matches)
                    raise RunDBError(f"run name {text!r} is ambiguous (runs {ids}); use the id")
                found = matches[0].id
        return self.get_run(found)

    def delete_run(self, run_id: int) -> DeletedRows:
        """Delete an ended run and every row that belongs to it (not its files).

        Refused (RunDBError naming the status) while the run is queued or running, or an evaluation
        of it runs. The status condition is part of the transaction's first statement, which holds
        the row until the delete commits: a Resume pressed between a caller's own check and this
        delete either queues the run first (and the delete is refused) or finds it gone."""
        with self.session(write=True) as s:
            if not self._hold_in(s, SqlRun, run_id, states.ENDED):
                row = self._require(s, run_id)
                raise RunDBError(f"run {run_id} is {row.status}: abort it, or let it end, before deleting it")
            busy = s.scalar(
                select(SqlJob.id).where(SqlJob.run_id == run_id, SqlJob.status.in_(states.ACTIVE))
            )
            if busy is not None:
                raise RunDBError(
                    f"run {run_id}: job {busy} (an evaluation of it) is still active; cancel it first"
                )
            ckpts = select(SqlCheckpoint.id).where(SqlCheckpoint.run_id == run_id)
            s.execute(delete(SqlEvaluation).where(SqlEvaluation.checkpoint_id.in_(ckpts)))
            counts = {
                key: s.execute(delete(model).where(model.run_id == run_id)).rowcount
                for key, model in (
                    ("metrics", SqlMetric),
                    ("rollouts", SqlRollout),
                    ("checkpoints", SqlCheckpoint),
                    ("events", SqlEvent),
                )
            }
            s.execute(delete(SqlRunConfig).where(SqlRunConfig.run_id == run_id))
            s.execute(delete(SqlAttempt).where(SqlAttempt.run_id == run_id))
            s.execute(delete(SqlRunWorker).where(SqlRunWorker.run_id == run_id))
            s.execute(delete(SqlJob).where(SqlJob.run_id == run_id))
            s.execute(update(SqlRun).where(SqlRun.resumed_from == run_id).values(resumed_from=None))
            runs = s.execute(
                delete(SqlRun).where(SqlRun.id == run_id, SqlRun.status.in_(states.ENDED))
            ).rowcount
            return DeletedRows(runs=runs, **counts)

    # ---- metrics and rollouts -----------------------------------------------------------------

    def log_metrics(
        self, run_id: int, step: int, values: Mapping[str, float], wall_time: float | None = None
    ) -> None:
        """Upsert one step's metrics (a re-logged (run, step, name) overwrites, never duplicates)."""
        wall = time.time() if wall_time is None else wall_time
        self.write_rows(run_id, [MetricPoint(step, n, float(v), wall) for n, v in values.items()], [])

    def log_rollouts(self, run_id: int, rollouts: Sequence[Rollout]) -> None:
        self.write_rows(run_id, [], rollouts)

    def write_rows(
        self,
        run_id: int,
        metrics: Sequence[MetricPoint],
        rollouts: Sequence[Rollout],
        *,
        lease: Lease | None = None,
    ) -> None:
        """Upsert metric points and rollouts of one run in one transaction (the writer's flush).

        With a ``lease`` (a trainer's writes) the rows carry its attempt and are refused with
        ``RunLost`` when that attempt no longer holds the run: nothing of the batch is written."""
        attempt = None if lease is None else lease.attempt
        metric_rows = [
            {
                "run_id": run_id,
                "step": p.step,
                "name": p.name,
                # SQLite turns NaN into NULL anyway; say so explicitly so every backend agrees.
                "value": None if math.isnan(p.value) else p.value,
                "wall_time": p.wall_time,
                "attempt": p.attempt if lease is None else attempt,
            }
            for p in metrics
        ]
        rollout_rows = [
            {"run_id": run_id, **asdict(r), "options": dict(r.options), "rewards": dict(r.rewards)}
            | ({} if lease is None else {"attempt": attempt})
            for r in rollouts
        ]
        if lease is not None and lease.run_id != run_id:
            raise RunDBError(f"rows of run {run_id} written with the lease of {lease.describe()}")
        with self.session(write=True) as s:
            if lease is not None:
                self._fence(s, lease)
            if metric_rows:
                updated = ["value", "wall_time", "attempt"]
                rows.upsert(s, _METRICS, metric_rows, ["run_id", "step", "name"], updated)
            if rollout_rows:
                keys = ["run_id", "step", "prompt_id", "group_index"]
                rows.upsert(s, _ROLLOUTS, rollout_rows, keys, [f for f in _ROLLOUT_FIELDS if f not in keys])

    def metrics_since(
        self, run_id: int, after_step: int | None = None, names: Sequence[str] | None = None
    ) -> dict[str, MetricSeries]:
        """Points with step > ``after_step`` (all when None), by name, in step order."""
        return self.compare_runs([run_id], names, after_step=after_step).get(run_id, {})

    def compare_runs(
        self, run_ids: Sequence[int], names: Sequence[str] | None = None, *, after_step: int | None = None
    ) -> dict[int, dict[str, MetricSeries]]:
        """Metrics of several runs: ``{run_id: {name: series}}``; one indexed query."""
        t = _METRICS
        query = select(t.c.run_id, t.c.step, t.c.name, t.c.value, t.c.wall_time).order_by(
            t.c.run_id, t.c.step
        )
        query = query.where(t.c.run_id.in_(list(run_ids)) if len(run_ids) != 1 else t.c.run_id == run_ids[0])
        if after_step is not None:
            query = query.where(t.c.step > after_step)
        if names is not None:
            query = query.where(t.c.name.in_(list(names)))
        columns: dict[tuple[int, str], tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
        with self.session() as s:
            for run_id, step, name, value, wall in s.connection().execute(query):
                steps, values, walls = columns[(run_id, name)]
                steps.append(step)
                values.append(math.nan if value is None else value)
                walls.append(wall)
        out: dict[int, dict[str, MetricSeries]] = {}
        for (run_id, name), (steps, values, walls) in columns.items():
            out.setdefault(run_id, {})[name] = MetricSeries(name, tuple(steps), tuple(values), tuple(walls))
        return out

    def metric_points(self, run_id: int) -> list[MetricPoint]:
        """Every point of a run, ordered by step then name (exports)."""
        t = _METRICS
        query = select(t.c.step, t.c.name, t.c.value, t.c.wall_time, t.c.attempt).where(t.c.run_id == run_id)
        with self.session() as s:
            result = s.connection().execute(query.order_by(t.c.step, t.c.name))
            return [MetricPoint(st, n, math.nan if v is None else v, w, a) for st, n, v, w, a in result]

    def latest_metrics(self, run_ids: Sequence[int] | None = None) -> dict[int, dict[str, MetricPoint]]:
        """The newest point of every metric of each run: ``{run_id: {name: point}}``."""
        t = _METRICS
        newest = select(t.c.run_id, t.c.name, func.max(t.c.step).label("step")).group_by(t.c.run_id, t.c.name)
        if run_ids is not None:
            newest = newest.where(t.c.run_id.in_(list(run_ids)))
        sub = newest.subquery()
        query = select(t.c.run_id, t.c.step, t.c.name, t.c.value, t.c.wall_time).join(
            sub, (t.c.run_id == sub.c.run_id) & (t.c.name == sub.c.name) & (t.c.step == sub.c.step)
        )
        out: dict[int, dict[str, MetricPoint]] = {}
        with self.session() as s:
            for run_id, step, name, value, wall in s.connection().execute(query):
                out.setdefault(run_id, {})[name] = MetricPoint(
                    step, name, math.nan if value is None else value, wall
                )
        return out

    def rollout_steps(self, run_id: int) -> list[int]:
        with self.session() as s:
            query = (
                select(SqlRollout.step)
                .where(SqlRollout.run_id == run_id)
                .distinct()
                .order_by(SqlRollout.step)
            )
            return list(s.scalars(query))

    def rollouts(self, run_id: int, step: int | None = None) -> list[Rollout]:
        """A run's rollouts at ``step`` (all steps when None), by step, prompt and group index."""
        query = select(SqlRollout).where(SqlRollout.run_id == run_id)
        if step is not None:
            query = query.where(SqlRollout.step == step)
        query = query.order_by(SqlRollout.step, SqlRollout.prompt_id, SqlRollout.group_index)
        with self.session() as s:
            return [
                Rollout(
                    step=r.step, **{f: getattr(r, f) for f in _ROLLOUT_FIELDS} | {"rewards": r.rewards or {}}
                )
                for r in s.scalars(query)
            ]

    def count_rows(self, run_id: int) -> dict[str, int]:
        """How many metric points and rollouts a run has."""
        with self.session() as s:
            return {
                "metrics": s.scalar(select(func.count()).where(SqlMetric.run_id == run_id)) or 0,
                "rollouts": s.scalar(select(func.count()).where(SqlRollout.run_id == run_id)) or 0,
            }

    def _fence_or_require(self, s: Session, run_id: int, lease: Lease | None) -> None:
        """The lease's fence when there is one (it must be this run's), else: the run must exist."""
        if lease is None:
            self._require(s, run_id)
            return
        if lease.run_id != run_id:
            raise RunDBError(f"a write to run {run_id} with the lease of {lease.describe()}")
        self._fence(s, lease)

    def _require(self, s: Session, run_id: int) -> SqlRun:
        row = s.get(SqlRun, run_id)
        if row is None:
            raise RunDBError(f"no run {run_id} in {self.url}")
        return row
