"""`quarry db upgrade` and `quarry db current`: the schema of the configured database
(storage.database_url, or the SQLite file in storage.data_dir)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from quarry.cli import _fail, app, out
from quarry.core.errors import QuarryError

db = typer.Typer(name="db", help="The metadata database's schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db)


@contextmanager
def _engine() -> Iterator[Any]:
    from pydantic import ValidationError

    from quarry.core.settings import get_settings
    from quarry.retrieval.storage import make_engine

    try:
        storage = get_settings().storage
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings: {problems}", 2) from None
    if not storage.database_url:
        storage.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(storage.resolved_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _guarded(work: Callable[[Any], None]) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    with _engine() as engine:
        try:
            work(engine)
        except QuarryError as exc:
            raise _fail(str(exc)) from None
        except SQLAlchemyError as exc:
            url = engine.url.render_as_string(hide_password=True)
            raise _fail(f"database {url}: {getattr(exc, 'orig', None) or exc}") from None


@db.command("upgrade")
def upgrade_command(
    revision: Annotated[str, typer.Option("--revision", "-r", help="Target revision (default: the newest).")] = "head",
) -> None:
    """Bring the database schema to a revision (safe to run from several machines at once)."""
    from quarry.retrieval import migrate

    def work(engine: Any) -> None:
        before = migrate.current(engine)
        after = migrate.upgrade(engine, revision)
        if before == after:
            out.print(f"database already at {after}", highlight=False)
        else:
            out.print(f"database upgraded from {before or 'nothing'} to {after}", highlight=False)

    _guarded(work)


@db.command("current")
def current_command() -> None:
    """Print the database's schema revision and whether it is the newest."""
    from quarry.retrieval import migrate

    def work(engine: Any) -> None:
        found, head = migrate.current(engine), migrate.head()
        if found == head:
            out.print(f"{found} (head)", highlight=False)
        else:
            out.print(f"{found or 'none'} (head is {head}: run `quarry db upgrade`)", highlight=False)

    _guarded(work)
