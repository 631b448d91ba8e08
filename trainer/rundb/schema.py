"""Opening the run database: the engine (SQLite pragmas for many processes) and alembic upgrades.

SQLite is the default and the one that needs care: several processes (one studio, several trainers)
share the file. WAL lets readers run beside one writer; ``busy_timeout`` makes a second writer wait
instead of failing with "database is locked"; write transactions start with ``BEGIN IMMEDIATE`` so a
writer takes the lock up front (a deferred transaction that reads and then writes can fail at once
with SQLITE_BUSY, the busy timeout does not help there).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from trainer.core.errors import RunDBError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Execution option set on the engine that write sessions use (see _begin).
WRITE_OPTION = "vgrpo_write"
# PostgreSQL: how long a session may sit inside a transaction without a statement (see make_engine).
IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key serialising migrations of one PostgreSQL database (any fixed bigint).
MIGRATION_LOCK_KEY = 0x76677270_6F6D6967  # "vgrpomig"


def make_engine(url: str, busy_timeout_s: float = 30.0) -> Engine:
    """An engine for ``url``; for SQLite: WAL, busy timeout, foreign keys, explicit BEGIN."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise RunDBError(f"run database URL {url!r} is not a SQLAlchemy URL: {exc}") from exc
    if not parsed.drivername.startswith("sqlite"):
        if parsed.drivername.startswith("postgresql"):
            # A process frozen inside a transaction (SIGSTOP, swap, a debugger) holds its row locks;
            # a trainer's fenced write holds its run's row. The server ends such a session after
            # this long, so a takeover by Resume waits at most this, not for ever.
            options = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
            return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
        return create_engine(url, pool_pre_ping=True)

    is_memory = parsed.database in (None, "", ":memory:")
    if is_memory:
        # One shared connection, or every connection would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event emit BEGIN instead of pysqlite's own guesswork.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if not is_memory:
            cur.execute("PRAGMA journal_mode = WAL")
            # Safe under WAL (a power cut may lose the last commits, never corrupt); much faster commits.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        is_write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if is_write else "BEGIN")

    return engine


def alembic_config(connection=None) -> Config:  # type: ignore[no-untyped-def]
    """An alembic config pointing at the migrations inside the installed package (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no alembic revisions in {MIGRATIONS_DIR}"
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database (None for an empty one)."""
    with engine.connect() as conn:
        return _stamped(conn)


def _stamped(conn: Connection) -> str | None:
    # Read the stamp directly: MigrationContext would log two INFO lines on every open.
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (a no-op when it is there already).

    The check runs first without a write lock, so opening an up-to-date database costs one read.
    The upgrade itself runs in one write transaction that first takes a lock (SQLite: ``BEGIN
    IMMEDIATE``; PostgreSQL: ``pg_advisory_xact_lock``), then reads the revision again: a second
    process opening the same new database waits for the first and then finds nothing to do,
    instead of racing it to CREATE TABLE.
    """
    script = ScriptDirectory.from_config(alembic_config())
    target = script.get_current_head() if revision == "head" else revision
    try:
        current = current_revision(engine)
        if current == target:
            return
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise RunDBError(
                f"run database {engine.url!r} is at schema revision {current}, which this version of "
                f"video-grpo-studio does not know (newest: {target}); upgrade the package or use another --db"
            )
        with engine.execution_options(**{WRITE_OPTION: True}).connect() as conn, _foreign_keys_off(conn):
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Held until this transaction ends: a second process starting now waits here.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                # Under the lock (SQLite: BEGIN IMMEDIATE), look again: the other process may be done.
                current = _stamped(conn)
                if current == target:
                    return
                logger.info("migrating run database %s from %s to %s", engine.url, current, target)
                command.upgrade(alembic_config(conn), revision)
                _check_foreign_keys(conn)
    except SQLAlchemyError as exc:
        raise RunDBError(f"cannot migrate run database {engine.url!r}: {exc}") from exc


@contextmanager
def _foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite: foreign keys off on this connection while it migrates, on again after.

    A SQLite migration that rebuilds a table (alembic's batch mode: copy, DROP the old table, rename)
    would otherwise cascade the DROP of ``runs`` into every table that references it (ON DELETE
    CASCADE). The pragma is ignored inside a transaction, so it is set on the driver's connection
    before the migration's transaction begins (pysqlite runs it at once: isolation_level is None)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(conn: Connection) -> None:
    """SQLite: refuse (roll back) a migration that left a row pointing at nothing (they were off)."""
    if conn.dialect.name != "sqlite":
        return
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RunDBError(f"migration of {conn.engine.url!r} left rows without their parent: {broken[:5]}")
