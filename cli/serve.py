"""`quarry serve` (everything on one machine), `quarry api` and `quarry worker`."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
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
    worker for every queue, and the API. A redis-server or worker that dies is started
    again; they all die with this process. Ctrl-C stops what it started."""
    settings = _settings()
    from quarry.core.errors import ConfigurationError
    from quarry.workers.process import make_private
    from quarry.workers.redis_server import EmbeddedRedis
    from quarry.workers.supervisor import Supervisor

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # the model loads from site-packages: no progress bar to watch, here or in the worker
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    data = settings.storage.data_dir
    make_private(data)
    logs = data / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    _log_to(logs / "serve.log")
    supervisor = Supervisor(settings.service.restart_backoff_max_s)
    url = settings.service.redis_url
    try:
        if not url:
            redis = EmbeddedRedis(data / "redis")
            try:
                redis.start()
            except ConfigurationError as exc:
                raise _fail(str(exc), 2) from None
            supervisor.add("redis-server", redis.start, lambda: redis.alive, redis.stop)
            url = redis.url
            log.info("embedded redis-server on %s", url)
        key = admin_key(settings)
        settings = with_service(
            settings,
            redis_url=url,
            admin_key=SecretStr(key),
            host=host or settings.service.host,
            port=port or settings.service.port,
        )
        env = {**os.environ, "QUARRY_SERVICE__REDIS_URL": url, "QUARRY_SERVICE__ADMIN_KEY": key}
        worker = WorkerProcess(env, logs / "worker.log").start()
        supervisor.add("worker", worker.start, worker.alive, worker.stop, worker.describe)
        supervisor.watch()
        if ingest:
            _queue_paths(settings, collection, ingest)
        threading.Thread(target=_announce_when_up, args=(settings, collection, logs), daemon=True).start()
        _run_api(settings, None, None, log_level="warning")
    finally:
        supervisor.stop()


log = logging.getLogger("quarry.serve")


def _log_to(path: Path) -> None:
    """Everything at INFO into `path`; only warnings and errors on the terminal (faiss's
    optional-feature notes and the like stay in the file)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_file)
    root.addHandler(to_terminal)


ERROR_LINE = re.compile(r"^\[[^\]]*: (ERROR|CRITICAL)/|^Traceback |^(ERROR|CRITICAL)\b")
LOG_LINE = re.compile(r"^\[[^\]]*: [A-Z]+/")


class WorkerProcess:
    """`quarry worker` for every queue, in a process group of its own (so its pool children
    stop with it) that is killed when this process dies. Its output (Celery's banner and
    logs) goes to `log_path`; errors and tracebacks are repeated on the terminal."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        from quarry.workers.process import child_setup

        self.process = subprocess.Popen(
            [sys.executable, "-m", "quarry.cli", "worker", "-Q", "ingest,search,gpu,research"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_setup(signal.SIGKILL, os.getpid()),  # noqa: PLW1509 - only calls prctl
        )
        threading.Thread(target=self._forward, args=(self.process,), daemon=True).start()
        return self

    def _forward(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as logfile:
            echo = False
            for raw in process.stdout:
                logfile.write(raw)
                logfile.flush()
                line = raw.decode(errors="replace").rstrip()
                if ERROR_LINE.search(line):
                    echo = True
                elif LOG_LINE.search(line):
                    echo = False
                if echo:
                    err.print(f"worker: {line}", highlight=False, markup=False)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def describe(self) -> str:
        code = self.process.poll() if self.process else None
        return f" (exit status {code}; see {self.log_path})" if code is not None else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):  # pool children left behind, if any
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


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


def _announce_when_up(settings: Settings, collection: str, logs: Path, timeout_s: float = 600) -> None:
    """One banner, once the API answers."""
    import httpx

    host = "127.0.0.1" if settings.service.host in ("0.0.0.0", "::") else settings.service.host
    base = f"http://{host}:{settings.service.port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/v1/health", timeout=5)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        return
    key = settings.service.admin_key.get_secret_value() if settings.service.admin_key else ""
    kept = settings.storage.data_dir / "admin.key"
    where = f"kept in {kept}" if kept.exists() and kept.read_text().strip() == key else "service.admin_key"
    err.print(
        f"\n[bold green]Quarry is ready[/]\n"
        f"  web UI   {base}/#key={key}\n"
        f"  API      {base}  (docs: {base}/docs)\n"
        f"  key      the admin key is {where}\n"
        f"  logs     {logs}\n"
        f"  try      curl -s -H \"Authorization: Bearer $(cat {kept})\" -H 'Content-Type: application/json' "
        f'-d \'{{"question": "How does Quarry keep an interrupted ingest from leaving half-written data?"}}\' '
        f"{base}/v1/collections/{collection}/ask\n",
        highlight=False,
        soft_wrap=True,
    )


def _run_api(settings: Settings, host: str | None, port: int | None, log_level: str = "info") -> None:
    import uvicorn

    from quarry.api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host or settings.service.host,
        port=port or settings.service.port,
        log_level=log_level,
        log_config=None if log_level == "warning" else uvicorn.config.LOGGING_CONFIG,
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
    from quarry.workers.process import make_private

    make_private(settings.storage.data_dir)
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
    from celery.signals import worker_process_init

    from quarry.workers.process import die_with_parent, make_private

    make_private(settings.storage.data_dir)
    # pool processes die with the worker's main process, even when it is killed
    worker_process_init.connect(lambda **_: die_with_parent(signal.SIGKILL), weak=False)
    n = concurrency or settings.service.worker_concurrency
    name = f"quarry-{'-'.join(wanted)}-{os.getpid()}@%h"
    celery.worker_main(["worker", "-Q", ",".join(wanted), "-c", str(n), "-n", name, "--loglevel", "INFO"])
