"""`quarry serve` as a user runs it: one banner, private files, and children that come back
when killed and die with it (real processes, real HTTP)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process under `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Serve:
    def __init__(self, tmp: Path, **env: str) -> None:
        self.data = tmp / ".quarry"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = tmp / f"serve-{self.port}.out"
        self.err = tmp / f"serve-{self.port}.err"
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "QUARRY_STORAGE__DATA_DIR": str(self.data),
            "QUARRY_SERVICE__PORT": str(self.port),
            **env,
        }
        for name in ("QUARRY_SERVICE__REDIS_URL", "QUARRY_SERVICE__ADMIN_KEY"):
            self.env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quarry.cli", "serve"],
            cwd=tmp,
            env=self.env,
            stdout=self.out.open("wb"),
            stderr=self.err.open("wb"),
            start_new_session=True,
        )

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def health(self) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=10)
        except httpx.HTTPError:
            return None

    def wait(self, what: str, check: object, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            assert self.process.poll() is None, f"serve exited: {self.stderr()}"
            time.sleep(0.3)
        raise AssertionError(f"{what} not within {timeout}s; serve said: {self.stderr()[-3000:]}")

    def healthy(self) -> bool:
        r = self.health()
        return r is not None and r.status_code == 200 and r.json()["workers"] >= 1

    def redis_pid(self) -> int:
        return int((self.data / "redis" / "redis.pid").read_text().strip())

    def worker_pid(self) -> int | None:
        kids = [p for p in descendants(self.process.pid) if "quarry.cli worker" in cmdline(p)]
        mains = [p for p in kids if "quarry.cli worker" not in cmdline(_parent(p))]
        return mains[0] if mains else None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _parent(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_one_banner_private_files_and_a_second_server_refused(serve: Serve, tmp_path: Path) -> None:
    serve.wait("the ready banner", lambda: "Quarry is ready" in serve.stderr())
    text = serve.stderr()
    key = (serve.data / "admin.key").read_text().strip()
    assert text.count("Quarry is ready") == 1
    assert text.count(key) == 1, text  # the key once, in the UI link
    assert f"{serve.url}/#key={key}" in text and str(serve.data / "admin.key") in text
    for noise in ("[queues]", "superuser privileges", "faiss", "Loading weights", "Uvicorn running"):
        assert noise not in text, f"{noise!r} on the terminal:\n{text}"
    assert "[queues]" in (serve.data / "logs" / "worker.log").read_text()  # Celery's banner went to the log
    r = httpx.get(f"{serve.url}/v1/health", timeout=10)
    assert r.headers["x-content-type-options"] == "nosniff"

    assert stat.S_IMODE(serve.data.stat().st_mode) == 0o700
    private = [p for p in serve.data.rglob("*") if p.is_file()]
    assert {"quarry.db", "admin.key", "redis.log", "worker.log"} <= {p.name for p in private}
    assert any("aof" in p.name for p in private)
    loose = [f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in private if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not loose, loose

    second = Serve(tmp_path)  # the same data directory, another port
    try:
        assert second.process.wait(timeout=120) != 0
        assert "already runs" in second.stderr() and str(serve.redis_pid()) in second.stderr()
    finally:
        second.stop()
    assert serve.healthy()


def test_killed_children_come_back_and_die_with_serve(serve: Serve) -> None:
    serve.wait("healthy", serve.healthy)
    redis = serve.redis_pid()
    os.kill(redis, signal.SIGKILL)
    serve.wait("a new redis-server", lambda: serve.redis_pid() != redis and alive(serve.redis_pid()), 60)
    serve.wait("healthy after redis", serve.healthy, 120)

    worker = serve.worker_pid()
    assert worker is not None
    pool = descendants(worker)
    assert pool, "the worker has pool processes"
    os.kill(worker, signal.SIGKILL)
    serve.wait("a new worker", lambda: serve.worker_pid() not in (None, worker), 60)
    serve.wait("the old pool processes gone", lambda: not any(alive(p) for p in pool), 30)
    serve.wait("healthy after the worker", serve.healthy, 120)
    assert "redis-server died" in serve.stderr() and "worker died" in serve.stderr()

    serve.wait("the new worker's pool", lambda: len(descendants(serve.process.pid)) >= 4, 60)  # redis, worker, pool
    children = descendants(serve.process.pid)
    os.kill(serve.process.pid, signal.SIGKILL)  # only serve itself, not its group
    serve.process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [cmdline(p) for p in children if alive(p)], "orphans outlived serve"

    again = Serve(serve.data.parent)  # a restart on the same data directory starts cleanly
    try:
        again.wait("healthy after a restart", again.healthy)
    finally:
        again.stop()


def test_a_job_held_by_a_killed_worker_still_completes(tmp_path: Path) -> None:
    """The worker is frozen while a job is queued (its pending fetch may take the message
    from Redis), then killed: serve starts another, and the job is delivered again."""
    serve = Serve(tmp_path, QUARRY_SERVICE__JOB_LEASE_S="5")
    try:
        serve.wait("healthy", serve.healthy)
        key = (serve.data / "admin.key").read_text().strip()
        worker = serve.worker_pid()
        assert worker is not None
        os.killpg(worker, signal.SIGSTOP)
        with httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            docs = [{"name": "basalt.txt", "text": "Basalt columns form when lava cools and contracts."}]
            r = c.post("/v1/collections/kb/documents/text", json={"documents": docs})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            time.sleep(2)
            os.killpg(worker, signal.SIGKILL)
            deadline = time.monotonic() + 180
            while (job := c.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.5)
            assert job["status"] == "succeeded", job
            assert c.get("/v1/collections/kb/documents").json()[0]["status"] == "indexed"
    finally:
        serve.stop()
