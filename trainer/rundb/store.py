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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from trainer.core.errors import RunDBError
from trainer.core.paths import default_db_url
from trainer.rundb import rows, schema, states
from trainer.rundb.entities import (
    Checkpoint,
    DeletedRows,
    Evaluation,
    Event,
    MetricPoint,
    MetricSeries,
    Rollout,
    Run,
    RunConfig,
)
from trainer.rundb.jobs import JobRows
from trainer.rundb.liveness import Owner
from trainer.rundb.models import (
    EVENT_LEVELS,
    SqlAttempt,
    SqlCheckpoint,
    SqlEvaluation,
    SqlEvent,
    SqlJob,
    SqlMetric,
    SqlRollout,
    SqlRun,
    SqlRunConfig,
)
from trainer.rundb.runs import RunRows

logger = logging.getLogger(__name__)

ENDED_STATUSES = states.ENDED
_METRICS = SqlMetric.__table__
_ROLLOUTS = SqlRollout.__table__
_ROLLOUT_FIELDS = [name for name in Rollout.__dataclass_fields__ if name != "step"]


class RunStore(RunRows, JobRows):
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
        status: str = states.QUEUED,
    ) -> Run:
        """A new run (and its config row when a config is given): ``queued``, held by ``owner`` (the
        process that will start its trainer) when given; or ``finished`` for a model registered from
        outside (``vgrpo eval`` of a base model)."""
        if not name.strip():
            raise RunDBError("run name must not be empty")
        states.check_initial(states.RUN, status)
        now = time.time()
        with self.session(write=True) as s:
            row = SqlRun(
                name=name,
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
        self, run_id: int, config: Mapping[str, Any], dataset_fingerprints: Mapping[str, Any] | None = None
    ) -> None:
        with self.session(write=True) as s:
            self._require(s, run_id)
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

    def list_runs(self, *, status: str | None = None) -> list[Run]:
        """All runs, newest first. Reads never write: dead owners are ended by ``reap_dead_runs``."""
        with self.session() as s:
            query = select(SqlRun).order_by(SqlRun.id.desc())
            if status is not None:
                query = query.where(SqlRun.status == status)
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
        """Delete a run and every row that belongs to it (not its files)."""
        with self.session(write=True) as s:
            self._require(s, run_id)
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
            s.execute(delete(SqlJob).where(SqlJob.run_id == run_id))
            s.execute(update(SqlRun).where(SqlRun.resumed_from == run_id).values(resumed_from=None))
            runs = s.execute(delete(SqlRun).where(SqlRun.id == run_id)).rowcount
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

    def write_rows(self, run_id: int, metrics: Sequence[MetricPoint], rollouts: Sequence[Rollout]) -> None:
        """Upsert metric points and rollouts of one run in one transaction (the writer's flush)."""
        metric_rows = [
            {
                "run_id": run_id,
                "step": p.step,
                "name": p.name,
                # SQLite turns NaN into NULL anyway; say so explicitly so every backend agrees.
                "value": None if math.isnan(p.value) else p.value,
                "wall_time": p.wall_time,
            }
            for p in metrics
        ]
        rollout_rows = [{"run_id": run_id, **asdict(r), "options": dict(r.options)} for r in rollouts]
        with self.session(write=True) as s:
            if metric_rows:
                rows.upsert(s, _METRICS, metric_rows, ["run_id", "step", "name"], ["value", "wall_time"])
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
        query = select(t.c.step, t.c.name, t.c.value, t.c.wall_time).where(t.c.run_id == run_id)
        with self.session() as s:
            result = s.connection().execute(query.order_by(t.c.step, t.c.name))
            return [MetricPoint(st, n, math.nan if v is None else v, w) for st, n, v, w in result]

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
                Rollout(step=r.step, **{f: getattr(r, f) for f in _ROLLOUT_FIELDS}) for r in s.scalars(query)
            ]

    def count_rows(self, run_id: int) -> dict[str, int]:
        """How many metric points and rollouts a run has."""
        with self.session() as s:
            return {
                "metrics": s.scalar(select(func.count()).where(SqlMetric.run_id == run_id)) or 0,
                "rollouts": s.scalar(select(func.count()).where(SqlRollout.run_id == run_id)) or 0,
            }

    # ---- checkpoints, evaluations, events ------------------------------------------------------

    def add_checkpoint(self, run_id: int, step: int, path: str, metrics: Mapping[str, float]) -> Checkpoint:
        """Record the checkpoint of ``step``; a resumed attempt saving that step again updates the row
        (same id, so its evaluations stay attached)."""
        now = time.time()
        with self.session(write=True) as s:
            self._require(s, run_id)
            row = s.scalar(
                select(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id, SqlCheckpoint.step == step)
            )
            if row is None:
                row = SqlCheckpoint(
                    run_id=run_id, step=step, path=path, created_at=now, metrics=dict(metrics)
                )
                s.add(row)
            else:
                row.path, row.created_at, row.metrics, row.deleted_at = path, now, dict(metrics), None
            s.add(
                SqlEvent(
                    run_id=run_id, time=now, level="info", kind="checkpoint", message=f"step {step}: {path}"
                )
            )
            s.flush()
            return rows.to_checkpoint(row)

    def mark_checkpoints_deleted(self, run_id: int, paths: Iterable[str]) -> int:
        """Checkpoints of ``run_id`` at ``paths`` were removed from disk (``save_total_limit``)."""
        paths = [str(p) for p in paths]
        if not paths:
            return 0
        with self.session(write=True) as s:
            return s.execute(
                update(SqlCheckpoint)
                .where(
                    SqlCheckpoint.run_id == run_id,
                    SqlCheckpoint.path.in_(paths),
                    SqlCheckpoint.deleted_at.is_(None),
                )
                .values(deleted_at=time.time())
                .execution_options(synchronize_session=False)
            ).rowcount

    def checkpoints(self, run_id: int, *, include_deleted: bool = False) -> list[Checkpoint]:
        """A run's checkpoints by step; those removed from disk only with ``include_deleted``."""
        query = select(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id)
        if not include_deleted:
            query = query.where(SqlCheckpoint.deleted_at.is_(None))
        with self.session() as s:
            return [rows.to_checkpoint(row) for row in s.scalars(query.order_by(SqlCheckpoint.step))]

    def add_evaluation(
        self,
        checkpoint_id: int,
        dataset: str,
        *,
        accuracy: float,
        format_rate: float,
        results: Sequence[Mapping[str, Any]] = (),
        eval_key: str | None = None,
        dataset_fingerprint: str | None = None,
        settings: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        with self.session(write=True) as s:
            if s.get(SqlCheckpoint, checkpoint_id) is None:
                raise RunDBError(f"no checkpoint {checkpoint_id} in {self.url}")
            row = SqlEvaluation(
                checkpoint_id=checkpoint_id,
                dataset=dataset,
                created_at=time.time(),
                accuracy=accuracy,
                format_rate=format_rate,
                results=[dict(r) for r in results],
                eval_key=eval_key,
                dataset_fingerprint=dataset_fingerprint,
                settings=None if settings is None else dict(settings),
                summary=None if summary is None else dict(summary),
            )
            s.add(row)
            s.flush()
            return rows.to_evaluation(row)

    def find_evaluation(self, checkpoint_id: int, eval_key: str) -> Evaluation | None:
        """The latest evaluation of this checkpoint with this key (same records, same decoding)."""
        query = (
            select(SqlEvaluation)
            .where(SqlEvaluation.checkpoint_id == checkpoint_id, SqlEvaluation.eval_key == eval_key)
            .order_by(SqlEvaluation.id.desc())
            .limit(1)
        )
        with self.session() as s:
            row = s.scalars(query).first()
            return None if row is None else rows.to_evaluation(row)

    def evaluations(self, run_id: int) -> list[Evaluation]:
        query = (
            select(SqlEvaluation)
            .join(SqlCheckpoint, SqlCheckpoint.id == SqlEvaluation.checkpoint_id)
            .where(SqlCheckpoint.run_id == run_id)
            .order_by(SqlCheckpoint.step, SqlEvaluation.id)
        )
        with self.session() as s:
            return [rows.to_evaluation(row) for row in s.scalars(query)]

    def add_event(self, run_id: int, kind: str, message: str, level: str = "info") -> None:
        if level not in EVENT_LEVELS:
            raise RunDBError(f"run {run_id} event {kind!r}: level {level!r} not in {EVENT_LEVELS}")
        with self.session(write=True) as s:
            s.add(SqlEvent(run_id=run_id, time=time.time(), level=level, kind=kind, message=message))

    def events(self, run_id: int) -> list[Event]:
        with self.session() as s:
            query = select(SqlEvent).where(SqlEvent.run_id == run_id).order_by(SqlEvent.time, SqlEvent.id)
            return [Event(e.id, e.run_id, e.time, e.level, e.kind, e.message) for e in s.scalars(query)]

    def _require(self, s: Session, run_id: int) -> SqlRun:
        row = s.get(SqlRun, run_id)
        if row is None:
            raise RunDBError(f"no run {run_id} in {self.url}")
        return row
