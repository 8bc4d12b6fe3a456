"""`quarry serve` (everything on one machine), `quarry api` and `quarry worker`."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from quarry.cli import _fail, app, err
from quarry.core.settings import Settings, get_settings

QueuesOpt = Annotated[str, typer.Option("--queues", "-Q", help="Comma-separated: ingest,search,gpu,research.")]


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        raise _fail(f"invalid settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", 2) from None


def admin_key(settings: Settings) -> str:
    """The configured admin key, or one kept in the data directory (made on first use)."""
    if settings.service.admin_key:
        return settings.service.admin_key.get_secret_value()
    path = settings.storage.data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip()
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    key = "qk_admin_" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def with_service(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update={"service": settings.service.model_copy(update=values)})


@app.command()
def serve(
    ingest: Annotated[list[Path] | None, typer.Option("--ingest", help="Folders or files to ingest at start.")] = None,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection for --ingest.")] = "quarry-docs",
    host: Annotated[str | None, typer.Option(help="API address (service.host).")] = None,
    port: Annotated[int | None, typer.Option(help="API port (service.port).")] = None,
) -> None:
    """Run everything on this machine: Redis (embedded unless service.redis_url is set), a
    worker for every queue, and the API. Ctrl-C stops what it started."""
    settings = _settings()
    from quarry.workers.redis_server import EmbeddedRedis

    redis = None
    url = settings.service.redis_url
    if not url:
        redis = EmbeddedRedis(settings.storage.data_dir / "redis").start()
        url = redis.url
        err.print(f"embedded redis-server on {url}")
    key = admin_key(settings)
    settings = with_service(
        settings,
        redis_url=url,
        admin_key=SecretStr(key),
        host=host or settings.service.host,
        port=port or settings.service.port,
    )
    env = {**os.environ, "QUARRY_SERVICE__REDIS_URL": url, "QUARRY_SERVICE__ADMIN_KEY": key}
    worker = subprocess.Popen(
        [sys.executable, "-m", "quarry.cli", "worker", "-Q", "ingest,search,gpu,research"], env=env
    )
    try:
        if ingest:
            _queue_paths(settings, collection, ingest)
        _print_welcome(settings, key, collection)
        _run_api(settings, None, None)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        if redis:
            redis.stop()


def _queue_paths(settings: Settings, collection: str, paths: list[Path]) -> None:
    from quarry.retrieval.library import Library
    from quarry.retrieval.loaders import iter_files
    from quarry.workers.app import make_celery
    from quarry.workers.jobs import JobStore

    library = Library(settings)
    files = [(str(p.resolve()), source) for p, source in iter_files(paths)]
    jobs = JobStore(library.store.engine)
    job = jobs.create("ingest", "default", collection, {"paths": files}, len(files))
    make_celery(settings).send_task("quarry.ingest_job", args=[job.id])
    err.print(f"ingesting {len(files)} file(s) into '{collection}' (job {job.id})")
    library.close()


def _print_welcome(settings: Settings, key: str, collection: str) -> None:
    base = f"http://{settings.service.host}:{settings.service.port}"
    err.print(f"\nQuarry on {base}  (OpenAPI docs: {base}/docs)")
    err.print(f"web UI, signed in with the admin key: {base}/#key={key}")
    err.print(f"admin key: {key}  (kept in {settings.storage.data_dir / 'admin.key'} unless service.admin_key is set)")
    err.print(
        f"try: curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f'-d \'{{"question": "How does Quarry keep an interrupted ingest from leaving half-written data?"}}\' '
        f"{base}/v1/collections/{collection}/ask\n"
    )


def _run_api(settings: Settings, host: str | None, port: int | None) -> None:
    import uvicorn

    from quarry.api.app import create_app

    uvicorn.run(
        create_app(settings), host=host or settings.service.host, port=port or settings.service.port, log_level="info"
    )


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="Address (service.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (service.port).")] = None,
) -> None:
    """Run only the API (many-machine set-ups: service.redis_url and storage.database_url shared)."""
    settings = _settings()
    if not settings.service.redis_url:
        raise _fail("`quarry api` needs service.redis_url (QUARRY_SERVICE__REDIS_URL); `quarry serve` embeds one", 2)
    if not settings.service.admin_key:
        settings = with_service(settings, admin_key=SecretStr(admin_key(settings)))
    _run_api(settings, host, port)


@app.command()
def worker(
    queues: QueuesOpt = "ingest,search,gpu,research",
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="service.worker_concurrency")] = None,
) -> None:
    """Run a Celery worker for some queues."""
    settings = _settings()
    from quarry.workers.app import QUEUES, make_celery

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if unknown or not wanted:
        raise _fail(f"unknown queue(s) {unknown}: choose from {', '.join(QUEUES)}", 2)
    if not settings.service.redis_url:
        raise _fail("`quarry worker` needs service.redis_url (QUARRY_SERVICE__REDIS_URL)", 2)
    celery = make_celery(settings, register=True)
    n = concurrency or settings.service.worker_concurrency
    name = f"quarry-{'-'.join(wanted)}-{os.getpid()}@%h"
    celery.worker_main(["worker", "-Q", ",".join(wanted), "-c", str(n), "-n", name, "--loglevel", "INFO"])
