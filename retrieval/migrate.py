"""Schema migrations: Alembic revisions (retrieval/migrations) run on a given engine, with no
alembic.ini, safely when several processes start at once.

- `upgrade(engine)` brings the database to the newest revision. A database already there is
  left alone without taking any lock (one read of alembic_version). Otherwise it takes a lock
  for the whole run: `pg_advisory_lock` on PostgreSQL, `flock` on `<dbfile>.migrate.lock` on a
  SQLite file (none for an in-memory database), and re-reads the revision under it, so a
  second process finds the work done.
- A database made before migrations existed (Quarry's tables, no alembic_version) is adopted
  first: revision 0001 creates whichever of its tables the old code had not created yet and
  stamps the database 0001; later revisions then apply as usual.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from quarry.retrieval.errors import RetrievalError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
INITIAL = "0001_initial"
# The tables of revision 0001, which releases before migrations created on connect.
LEGACY_TABLES = frozenset({"collections", "documents", "chunks", "jobs", "job_uploads", "api_keys"})
PG_LOCK_KEY = 0x5155_4152_5259_4442  # "QUARRYDB": the advisory lock every Quarry process migrates under

log = logging.getLogger("quarry.retrieval")
# Alembic's `op` and `context` are process-wide proxies: one migration at a time per process.
_in_process = threading.Lock()


class MigrationError(RetrievalError):
    """The schema cannot be brought to the wanted revision."""


class SchemaOutdatedError(MigrationError):
    """The database is behind this release's schema and may not be upgraded automatically."""


def head() -> str:
    """The newest revision this release knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "no migration revisions found"
    return revision


def current(engine: Engine | Connection) -> str | None:
    """The database's revision (None: no migrations applied)."""
    with _connected(engine) as conn:
        return _current(conn)


def upgrade(engine: Engine | Connection, revision: str = "head") -> str:
    """Bring the database to `revision` (default: the newest) and return it. Given a
    connection, it migrates on that one (outside any transaction of the caller's: each
    revision commits)."""
    target = _resolve(revision)
    found = current(engine)
    if found == target:
        return target
    _check_known(found, engine)
    _check_forward(found, target)
    with _in_process, _locked(engine) as conn:
        found = _current(conn)  # another process may have done the work meanwhile
        if found == target:
            return target
        _check_known(found, engine)
        _check_forward(found, target)
        if found is None and LEGACY_TABLES & set(inspect(conn).get_table_names()):
            log.info("adopting a database made before migrations: stamping %s", INITIAL)
            _run(conn, INITIAL, adopt_existing=True)
            found = INITIAL
        if found != target:
            log.info("upgrading the database schema from %s to %s", found or "nothing", target)
            _run(conn, target)
        return target


def require_head(engine: Engine | Connection) -> None:
    """Raise SchemaOutdatedError unless the database is at the newest revision."""
    found, newest = current(engine), head()
    if found != newest:
        _check_known(found, engine)
        raise SchemaOutdatedError(
            f"the database {_name(engine)} is at schema revision {found or 'none (never migrated)'}, "
            f"but this release needs {newest}: run `quarry db upgrade` (or set storage.auto_upgrade = true)"
        )


def _run(conn: Connection, revision: str, **attributes: Any) -> None:
    config = _config()
    config.attributes.update(connection=conn, **attributes)
    try:
        command.upgrade(config, revision)
    except CommandError as exc:
        raise MigrationError(f"cannot upgrade the database to {revision}: {exc}") from exc
    if conn.in_transaction():
        conn.commit()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _current(conn: Connection) -> str | None:
    began = not conn.in_transaction()
    revision = MigrationContext.configure(conn).get_current_revision()
    if began and conn.in_transaction():
        conn.rollback()  # the read began a transaction; end it before any DDL
    return revision


def _resolve(revision: str) -> str:
    if revision == "head":
        return head()
    try:
        script = _scripts().get_revision(revision)
    except Exception as exc:  # alembic raises several kinds for unknown or ambiguous ids
        raise MigrationError(f"unknown schema revision {revision!r}; known: {', '.join(_known())}") from exc
    if script is None:
        raise MigrationError(f"unknown schema revision {revision!r}; known: {', '.join(_known())}")
    return script.revision


def _known() -> list[str]:
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def _check_known(found: str | None, engine: Engine | Connection) -> None:
    if found is not None and found not in _known():
        raise MigrationError(
            f"the database {_name(engine)} is at schema revision {found!r}, which this release does not "
            f"know (it knows {', '.join(_known())}): it was migrated by a newer Quarry"
        )


def _check_forward(found: str | None, target: str) -> None:
    known = _known()
    if found is not None and known.index(found) > known.index(target):
        raise MigrationError(f"the database is at schema revision {found}, past {target}: migrations only go forward")


def _name(bind: Engine | Connection) -> str:
    return bind.engine.url.render_as_string(hide_password=True)


@contextmanager
def _connected(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


@contextmanager
def _locked(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection held under the migration lock of the database."""
    dialect = bind.dialect.name
    if dialect == "sqlite":
        with _file_lock(_sqlite_file(bind.engine)), _connected(bind) as conn:
            # A table rebuilt by a later revision (batch mode) is dropped and recreated: with
            # foreign keys on, dropping it would cascade into its children.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
        return
    with _connected(bind) as conn:
        if dialect != "postgresql":
            yield conn
            return
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        conn.commit()
        try:
            yield conn
        finally:
            try:
                if conn.in_transaction():
                    conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
            except Exception:
                conn.invalidate()  # closing the session releases the lock


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


@contextmanager
def _file_lock(database: Path | None) -> Iterator[None]:
    if database is None:  # in-memory: nothing else can see it
        yield
        return
    fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
