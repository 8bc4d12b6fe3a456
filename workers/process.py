"""Child processes that die with their parent, private files, and a data-directory lock."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from quarry.core.errors import ConfigurationError

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return fn


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (even by SIGKILL); a
    no-op elsewhere. Kept across exec, so a child can call it between fork and exec."""
    prctl = _prctl()
    if prctl is not None and prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def child_setup(sig: int, parent: int) -> Callable[[], None]:
    """A `preexec_fn` for Popen: the child gets `sig` when `parent` (the caller) dies, and
    exits at once if the parent is already gone. The C function is looked up here, in the
    parent, so the forked child only calls it."""
    prctl = _prctl()

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def make_private(directory: Path) -> None:
    """Create `directory` (0700) and make what is already in it readable by its owner only;
    files created from now on by this process and its children are private (umask 077)."""
    os.umask(0o077)
    directory.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(directory):
        with contextlib.suppress(OSError):
            os.chmod(root, 0o700)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


class DirectoryLock:
    """An exclusive lock on `path` (flock) that records a pid. The open descriptor can be
    handed to a child (`fd`, Popen's pass_fds), so the lock stays held while that child
    lives, even if this process is killed."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> DirectoryLock:
        if self.fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigurationError(
                f"{self.what} already runs on {self.path.parent} (pid {holder}, lock {self.path}); "
                "stop it first, or use another storage.data_dir"
            ) from None
        self.fd = fd
        return self

    def record(self, pid: int) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None
