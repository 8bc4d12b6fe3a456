"""The supervisor restarts a child that dies (backoff doubling, logged) and stops them all;
the embedded Redis refuses a second server on a directory whose server lives."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest

from quarry.core.errors import ConfigurationError
from quarry.workers.redis_server import EmbeddedRedis
from quarry.workers.supervisor import Supervisor


class Sleeper:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(["sleep", "60"])
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_a_dead_child_is_restarted_with_a_growing_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="quarry.serve")
    child = Sleeper()
    child.start()
    supervisor = Supervisor(backoff_max_s=30, poll_s=0.05)
    supervisor.add("sleeper", child.start, child.alive, child.stop)
    supervisor.watch()
    try:
        for expected in (2, 3):
            assert child.process is not None
            child.process.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 15
            while child.starts < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert child.starts == expected and child.alive()
        assert supervisor.children[0].backoff_s == 4.0  # 1 s, then 2 s, next 4 s
        messages = [r.getMessage() for r in caplog.records]
        assert "sleeper died; restarting it in 1s" in messages
        assert "sleeper died; restarting it in 2s" in messages
        assert "sleeper restarted (restart 2)" in messages
    finally:
        supervisor.stop()
    assert not child.alive()


def test_a_second_redis_server_on_a_live_directory_is_refused(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis").start()
    try:
        with pytest.raises(ConfigurationError, match="already runs"):
            EmbeddedRedis(tmp_path / "redis").start()
        assert first.ping()
        assert (tmp_path / "redis" / "redis.pid").read_text().strip() == str(first.process.pid)  # type: ignore[union-attr]
    finally:
        first.stop()
    second = EmbeddedRedis(tmp_path / "redis").start()  # once the first is gone, a new one starts
    second.stop()
