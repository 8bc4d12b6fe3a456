"""Keeps the child processes of `quarry serve` (the embedded redis-server, the worker)
running: a child that dies is started again after a backoff that doubles while it keeps
dying, and every death and restart is logged."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("quarry.serve")


@dataclass
class Child:
    name: str
    start: Callable[[], object]
    alive: Callable[[], bool]
    stop: Callable[[], None]
    describe: Callable[[], str] = lambda: ""
    backoff_s: float = 1.0
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)
    due_at: float | None = None  # when a dead child is started again


class Supervisor:
    """Watches children from a side thread; `stop` ends the watch and stops them, the last
    added first."""

    STABLE_S = 60.0  # a child up this long has its backoff reset

    def __init__(self, backoff_max_s: float = 30.0, poll_s: float = 0.5) -> None:
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # no restart while `stop` runs
        self._thread: threading.Thread | None = None

    def add(
        self,
        name: str,
        start: Callable[[], object],
        alive: Callable[[], bool],
        stop: Callable[[], None],
        describe: Callable[[], str] = lambda: "",
    ) -> None:
        """Register a child that is already running."""
        self.children.append(Child(name, start, alive, stop, describe))

    def watch(self) -> Supervisor:
        self._thread = threading.Thread(target=self._loop, name="quarry-supervisor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            with self._lock:
                for child in self.children:  # in order: the broker comes back before the worker
                    if self._stop.is_set():
                        return
                    self._check(child)

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.due_at is None:
            if child.alive():
                if now - child.started_at > self.STABLE_S:
                    child.backoff_s = 1.0
                return
            child.due_at = now + child.backoff_s
            log.warning("%s died%s; restarting it in %.0fs", child.name, child.describe(), child.backoff_s)
            return
        if now < child.due_at:
            return
        child.restarts += 1
        child.backoff_s = min(child.backoff_s * 2, self.backoff_max_s)
        try:
            child.start()
        except Exception as exc:  # logged, and tried again after a longer wait
            child.due_at = time.monotonic() + child.backoff_s
            log.error("%s did not start again (%s); next try in %.0fs", child.name, exc, child.backoff_s)
            return
        child.due_at = None
        child.started_at = time.monotonic()
        log.warning("%s restarted (restart %d)", child.name, child.restarts)

    def stop(self) -> None:
        """Stop the children in order, then the watch: a child started by the watch thread
        gets its parent-death signal when that thread ends, so the thread outlives them."""
        with self._lock:
            self._stop.set()
            for child in reversed(self.children):
                try:
                    child.stop()
                except Exception:  # stop the others regardless; this one is logged
                    log.exception("stopping %s failed", child.name)
        if self._thread is not None:
            self._thread.join(timeout=30)
