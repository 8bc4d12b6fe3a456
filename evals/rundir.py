"""A run directory: the run's configuration, one JSON line per (system, item) result
appended as it is made, and the reports. A crashed run re-opened with the same
configuration continues with the items it had not done."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from quarry.evals.errors import RunDirError

CONFIG = "config.json"
ITEMS = "items.jsonl"
_LOCK = ".lock"
_OUTPUTS = ("report.json", "report.md", "recall_at_k.png", "latency.png")


class RunDir:
    """An open run directory, locked against a second concurrent run."""

    def __init__(self, path: Path, lock: IO[str]) -> None:
        self.path = path
        self._lock = lock
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._load()

    @classmethod
    def open(cls, path: Path, setup: dict[str, Any], fresh: bool = False) -> RunDir:
        """Open (creating) `path` for a run with `setup` (configuration and settings
        fingerprint); refuses a directory made by a different setup. `fresh` drops what is
        there (results and setup) and starts over."""
        path.mkdir(parents=True, exist_ok=True)
        lock = (path / _LOCK).open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RunDirError(f"{path}: another eval is running in this run directory") from None
        try:
            config_path = path / CONFIG
            if fresh:
                for name in (CONFIG, ITEMS, *_OUTPUTS):
                    (path / name).unlink(missing_ok=True)
            if config_path.exists():
                stored = read_setup(path)
                if stored != json.loads(json.dumps(setup)):
                    raise RunDirError(
                        f"{path} holds a run with another configuration or settings; "
                        "use another --out, or --fresh to start it over"
                    )
            else:
                tmp = config_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(setup, indent=2, sort_keys=True))
                os.replace(tmp, config_path)
            return cls(path, lock)
        except BaseException:
            lock.close()
            raise

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # results ----------------------------------------------------------------------------
    def _load(self) -> None:
        """Read the results so far; a last line cut off by a crash is dropped from the file."""
        items = self.path / ITEMS
        if not items.exists():
            return
        data = items.read_bytes()
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            self._records[(record["system"], record["item"])] = record
            good += len(line)
        if good < len(data):
            with items.open("r+b") as f:
                f.truncate(good)

    def done(self, system: str, item: str) -> bool:
        return (system, item) in self._records

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def append(self, record: dict[str, Any]) -> None:
        """Add one result, on disk before this returns."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with (self.path / ITEMS).open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._records[(record["system"], record["item"])] = record


def read_setup(path: Path) -> dict[str, Any]:
    """The setup stored in a run directory."""
    config_path = path / CONFIG
    try:
        setup = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: not a run directory (no {CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{config_path}: malformed JSON at line {exc.lineno} ({exc.msg})") from None
    if not isinstance(setup, dict) or "config" not in setup:
        raise RunDirError(f"{config_path}: not a run configuration")
    return setup
