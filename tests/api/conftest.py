"""A live service for API tests: the real app over HTTP (uvicorn in a thread), a real Celery
worker process, and a database of its own (emptied first) on the session's Redis (see
`redis_server` in tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "qk_admin_test_key_0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    url: str
    settings: Any
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]]
    log_dir: Path

    def client(self, key: str | None = ADMIN, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=120)

    def start_worker(self, queues: str = "ingest,search,gpu,research") -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.workers)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "quarry.cli", "worker", "-Q", queues, "-c", "1"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (its pool children too)."""
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:  # a warm shutdown that hangs (e.g. broker gone): force it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def wait_job(self, client: httpx.Client, job_id: str, timeout: float = 240, path: str = "/v1/jobs") -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = client.get(f"{path}/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def start_live(tmp: Path, redis_url: str, database_url: str | None = None, **service: Any) -> Live:
    import uvicorn

    from quarry.api.app import create_app

    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    settings = make_settings(
        tmp,
        service={"redis_url": redis_url, "admin_key": ADMIN, "port": port, **service},
        ingest={"max_file_bytes": 200_000},
        storage={"database_url": database_url},
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "QUARRY_STORAGE__DATA_DIR": str(settings.storage.data_dir),
        "QUARRY_SERVICE__REDIS_URL": redis_url,
        "QUARRY_SERVICE__ADMIN_KEY": ADMIN,
        "QUARRY_INGEST__MAX_FILE_BYTES": "200000",
        **({"QUARRY_STORAGE__DATABASE_URL": database_url} if database_url else {}),
        **{f"QUARRY_SERVICE__{k.upper()}": str(v) for k, v in service.items()},
    }
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    live = Live(f"http://127.0.0.1:{port}", settings, env, [], tmp)
    live.start_worker()
    deadline = time.time() + 180
    with live.client() as c:
        while time.time() < deadline:
            try:
                if c.get("/v1/health").json().get("workers", 0) >= 1:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the service did not become healthy")
    live._server = server  # type: ignore[attr-defined]
    live._thread = thread  # type: ignore[attr-defined]
    return live


def stop_live(live: Live) -> None:
    for proc in live.workers:
        if proc.poll() is None:
            live.kill_worker(proc, signal.SIGTERM)
    live._server.should_exit = True  # type: ignore[attr-defined]
    live._thread.join(timeout=20)  # type: ignore[attr-defined]


def live_service(tmp_path_factory: pytest.TempPathFactory, name: str, redis_url: str) -> Iterator[Live]:
    """A live service for a fixture to yield from, on the Redis database `redis_url` (one
    of its own, from the `fresh_redis` fixture)."""
    service = start_live(tmp_path_factory.mktemp(name), redis_url)
    try:
        yield service
    finally:
        stop_live(service)


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory, fresh_redis: Callable[[], str]) -> Iterator[Live]:
    yield from live_service(tmp_path_factory, "service", fresh_redis())
