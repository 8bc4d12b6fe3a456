"""Alembic migrations on SQLite and PostgreSQL: fresh databases, upgrades that keep rows,
databases made before migrations, concurrent starts, `auto_upgrade=False`, `quarry db`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, func, inspect, select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import quarry.api.keys
import quarry.cli.db  # noqa: F401  (registers `quarry db`, as main() does)
import quarry.workers.jobs
from quarry.cli import app
from quarry.core.settings import get_settings
from quarry.retrieval import migrate
from quarry.retrieval.library import Library
from quarry.retrieval.migrate import INITIAL, PG_LOCK_KEY, MigrationError, SchemaOutdatedError
from quarry.retrieval.storage import Base, Store, make_engine
from tests.conftest import drop_schema, make_settings

GRAPH = {"graph_entities", "graph_mentions", "graph_subjects"}
SENTENCES = {"chunk_sentences"}
LEGACY = {"collections", "documents", "chunks", "jobs", "job_uploads", "api_keys"}
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or the session's PostgreSQL database (emptied
    before and after, as the other PostgreSQL tests expect)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quarry.db'}"
        return
    pg = request.getfixturevalue("postgres_url")
    engine = make_engine(pg)
    drop_schema(engine)
    try:
        yield pg
    finally:
        drop_schema(engine)
        engine.dispose()


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _legacy_schema(engine: Engine, names: set[str] = LEGACY) -> None:
    """The tables as releases before migrations made them: create_all of the models, no
    alembic_version."""
    Base.metadata.create_all(engine, tables=[t for t in Base.metadata.sorted_tables if t.name in names])


def _fill(engine: Engine) -> dict[str, Any]:
    """One row in each table of revision 0001, written with Core on reflected tables."""
    meta = MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        coll = conn.execute(
            t["collections"]
            .insert()
            .values(tenant="default", name="kb", version=1, embedding_model="m", dimension=4, created_at=NOW)
        ).inserted_primary_key[0]
        doc = conn.execute(
            t["documents"]
            .insert()
            .values(
                collection_id=coll,
                source="a.md",
                title="Alpha",
                content_hash="h",
                media_type="text/markdown",
                status="indexed",
                size_bytes=5,
                chunk_count=1,
                text="alpha",
                metadata={"k": 1},
                created_at=NOW,
                updated_at=NOW,
            )
        ).inserted_primary_key[0]
        chunk = conn.execute(
            t["chunks"]
            .insert()
            .values(
                document_id=doc,
                collection_id=coll,
                ordinal=0,
                text="alpha",
                start_char=0,
                end_char=5,
                token_count=1,
                heading="Alpha",
                metadata={},
                embedding=b"\0" * 16,
            )
        ).inserted_primary_key[0]
        conn.execute(
            t["jobs"]
            .insert()
            .values(
                id="job-1",
                kind="ingest",
                tenant="default",
                collection="kb",
                status="queued",
                params={"paths": []},
                done=0,
                total=1,
                partial=[],
                attempts=0,
                cancel_requested=False,
                heartbeat_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(t["job_uploads"].insert().values(job_id="job-1", ordinal=0, source="up.txt", data=b"bytes"))
        conn.execute(
            t["api_keys"]
            .insert()
            .values(
                id="key-1",
                name="reader",
                tenant="default",
                digest="d" * 64,
                collections=["*"],
                rights="read",
                revoked=False,
                created_at=NOW,
            )
        )
    return {"collection": coll, "document": doc, "chunk": chunk}


def _check_filled(url: str, ids: dict[str, Any]) -> None:
    """The rows of _fill, read back through the product's own stores."""
    store = Store(url, auto_upgrade=False)
    try:
        assert [(c.name, c.chunk_count) for c in store.collections()] == [("kb", 1)]
        assert store.chunks([ids["chunk"]])[ids["chunk"]].text == "alpha"
        assert store.document_text(ids["document"]) == "alpha"
        job = quarry.workers.jobs.JobStore(store.engine).get("job-1")
        assert (job.kind, job.params, job.total) == ("ingest", {"paths": []}, 1)
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT source, data FROM job_uploads")).one() == ("up.txt", b"bytes")
        keys = quarry.api.keys.KeyStore(store.engine).list_keys()
        assert [(k.name, k.collections) for k in keys] == [("reader", ["*"])]
    finally:
        store.close()


def test_upgrade_keeps_rows_adds_the_graph_and_cascades(url: str, engine: Engine) -> None:
    assert migrate.upgrade(engine, INITIAL) == INITIAL
    assert migrate.current(engine) == INITIAL
    assert _tables(engine) == LEGACY
    ids = _fill(engine)

    assert migrate.upgrade(engine) == migrate.head() == "0003_chunk_sentences"
    assert migrate.current(engine) == migrate.head()
    assert _tables(engine) == LEGACY | GRAPH | SENTENCES
    _check_filled(url, ids)

    meta = MetaData()
    meta.reflect(engine)
    entities, mentions, subjects, sentences = (
        meta.tables[n] for n in ("graph_entities", "graph_mentions", "graph_subjects", "chunk_sentences")
    )
    coll, doc, chunk = ids["collection"], ids["document"], ids["chunk"]
    with engine.begin() as conn:
        entity = conn.execute(
            entities.insert().values(collection_id=coll, key="alpha", name="Alpha", kind="title")
        ).inserted_primary_key[0]
        conn.execute(mentions.insert().values(chunk_id=chunk, entity_id=entity, collection_id=coll))
        conn.execute(subjects.insert().values(document_id=doc, entity_id=entity, collection_id=coll))
        assert conn.scalar(select(mentions.c.count)) == 1  # the server default
        conn.execute(
            sentences.insert().values(chunk_id=chunk, spans=[[0, 5]], prose=True, vectors=b"\x01" * 4, scales=b"\0" * 4)
        )
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM chunks WHERE id = :id"), {"id": chunk})
        assert conn.scalar(select(func.count()).select_from(mentions)) == 0
        assert conn.scalar(select(func.count()).select_from(sentences)) == 0
        assert conn.scalar(select(func.count()).select_from(subjects)) == 1
        conn.execute(text("DELETE FROM documents WHERE id = :id"), {"id": doc})
        assert conn.scalar(select(func.count()).select_from(subjects)) == 0
        conn.execute(text("DELETE FROM collections WHERE id = :id"), {"id": coll})
        assert conn.scalar(select(func.count()).select_from(entities)) == 0


def test_upgrade_on_a_connection_and_only_forward(engine: Engine) -> None:
    with engine.connect() as conn:
        assert migrate.upgrade(conn, INITIAL) == INITIAL
        assert migrate.current(conn) == INITIAL
    migrate.upgrade(engine)
    with pytest.raises(MigrationError, match="only go forward"):
        migrate.upgrade(engine, INITIAL)
    with pytest.raises(MigrationError, match="unknown schema revision"):
        migrate.upgrade(engine, "no-such-revision")


@pytest.mark.parametrize("made_by", ["service", "cli"])
def test_a_database_made_before_migrations_is_adopted(url: str, engine: Engine, made_by: str) -> None:
    """Stamped 0001 and upgraded; a database only the CLI had used (no jobs or API keys
    tables yet) gets the missing tables of 0001 first."""
    _legacy_schema(engine, LEGACY if made_by == "service" else {"collections", "documents", "chunks"})
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO collections (tenant, name, version, embedding_model, dimension, created_at) "
                "VALUES ('default', 'old', 3, 'm', 4, :now)"
            ),
            {"now": NOW},
        )
    assert migrate.current(engine) is None

    store = Store(url)
    try:
        assert migrate.current(store.engine) == migrate.head()
        assert _tables(store.engine) == LEGACY | GRAPH | SENTENCES
        assert [c.name for c in store.collections()] == ["old"]
        assert store.collection_version(store.collection("old").id) == 3
    finally:
        store.close()


def test_revision_0001_is_the_schema_releases_made(url: str, engine: Engine, tmp_path: Path) -> None:
    """0001 creates what create_all of the models made: the same DDL on SQLite, and no
    difference Alembic can see on PostgreSQL."""
    migrate.upgrade(engine, INITIAL)
    legacy = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name in LEGACY:
            table.to_metadata(legacy)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, legacy) == []
    if engine.dialect.name != "sqlite":
        return
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        _legacy_schema(old)
        query = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'alembic%' AND sql IS NOT NULL"

        def ddl(e: Engine) -> set[tuple[str, str, str]]:
            with e.connect() as conn:
                return {(kind, name, " ".join(sql.split())) for kind, name, sql in conn.execute(text(query))}

        assert ddl(engine) == ddl(old)
    finally:
        old.dispose()


def test_revisions_equal_the_models(engine: Engine) -> None:
    """Autogenerate finds nothing to do between the migrated database and Base.metadata
    (jobs, uploads, API keys and the passage graph included)."""
    migrate.upgrade(engine)
    assert {"jobs", "job_uploads", "api_keys"} | GRAPH <= set(Base.metadata.tables)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def _hold_lock(engine: Engine, url: str) -> tuple[Any, Any]:
    """Take the migration lock as another process would; returns (release, handle)."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
        conn.commit()

        def release() -> None:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()
            conn.close()

        return release, conn
    import fcntl
    import os

    fd = os.open(f"{engine.url.database}.migrate.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return lambda: os.close(fd), fd


def test_upgrade_waits_for_the_lock_and_skips_it_at_head(url: str, engine: Engine) -> None:
    release, _ = _hold_lock(engine, url)
    done = threading.Event()
    other = make_engine(url)
    try:
        worker = threading.Thread(target=lambda: (migrate.upgrade(other), done.set()))
        worker.start()
        assert not done.wait(1.0), "upgrade ran while another process held the migration lock"
        assert migrate.current(engine) is None
    finally:
        release()
    worker.join(30)
    assert done.is_set() and migrate.current(engine) == migrate.head()
    # at head: no lock taken, so a held lock does not delay a start
    release, _ = _hold_lock(engine, url)
    try:
        started = time.monotonic()
        Store(url).close()
        assert time.monotonic() - started < 5
    finally:
        release()
        other.dispose()


def test_threads_upgrading_at_once_all_succeed(url: str) -> None:
    engines = [make_engine(url) for _ in range(3)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def start(e: Engine) -> None:
        try:
            barrier.wait()
            migrate.upgrade(e)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert migrate.current(engines[0]) == migrate.head()
    finally:
        for e in engines:
            e.dispose()


@pytest.mark.e2e  # child processes
def test_processes_starting_at_once_all_succeed(url: str, engine: Engine, tmp_path: Path) -> None:
    """Three processes start their Store at the same moment, on a database made before
    migrations: one adopts and upgrades it under the lock, the others find it done."""
    _legacy_schema(engine)
    ready = tmp_path / "ready"
    ready.mkdir()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from quarry.retrieval.storage import Store
        ready = Path({str(ready)!r})
        (ready / sys.argv[1]).touch()
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < 3 and time.monotonic() < deadline:  # all imported: go
            time.sleep(0.01)
        Store({url!r}).close()
        """
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], [err for _, err in results]
    assert migrate.current(engine) == migrate.head()
    assert _tables(engine) == LEGACY | GRAPH | SENTENCES


def test_auto_upgrade_off_refuses_an_old_database(url: str, engine: Engine, tmp_path: Path) -> None:
    _legacy_schema(engine)
    with pytest.raises(SchemaOutdatedError, match=r"none \(never migrated\).*quarry db upgrade"):
        Store(url, auto_upgrade=False)
    migrate.upgrade(engine, INITIAL)
    settings = make_settings(tmp_path, storage={"database_url": url, "auto_upgrade": False})
    with pytest.raises(SchemaOutdatedError, match=r"at schema revision 0001_initial.*run `quarry db upgrade`"):
        Library(settings)
    assert migrate.current(engine) == INITIAL
    migrate.upgrade(engine)
    Store(url, auto_upgrade=False).close()


def test_db_commands(url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUARRY_STORAGE__DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["db", *args])
        return result.exit_code, result.stdout + result.stderr

    try:
        assert run("current") == (0, "none (head is 0003_chunk_sentences: run `quarry db upgrade`)\n")
        assert run("upgrade", "--revision", INITIAL) == (0, "database upgraded from nothing to 0001_initial\n")
        assert migrate.current(engine) == INITIAL
        assert run("upgrade") == (0, "database upgraded from 0001_initial to 0003_chunk_sentences\n")
        assert run("upgrade") == (0, "database already at 0003_chunk_sentences\n")
        assert run("current") == (0, "0003_chunk_sentences (head)\n")
        code, output = run("upgrade", "-r", "nope")
        assert code == 1 and "unknown schema revision 'nope'" in output
    finally:
        get_settings.cache_clear()
