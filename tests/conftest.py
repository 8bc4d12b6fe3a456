"""Shared fixtures: real SQLite/PostgreSQL, the bundled embedding model, real indexes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from quarry.core.settings import Settings  # noqa: E402
from quarry.retrieval.embedder import SentenceEmbedder  # noqa: E402
from quarry.retrieval.library import Library  # noqa: E402
from quarry.retrieval.storage import Store  # noqa: E402

PG_ADMIN_URL = os.environ.get("QUARRY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"


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
