"""Reading eval files with errors that name the file and line.

JSON objects read by `read_json` are `Located` dicts that remember the line they start
on, so a bad record deep inside a nested file (SQuAD's data → paragraphs → qas) is
reported where it is. JSONL is read line by line."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from json.decoder import JSONObject  # type: ignore[attr-defined]
from json.scanner import py_make_scanner  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from quarry.evals.errors import DatasetError


class Located(dict[str, Any]):
    """A JSON object with the file and line it starts on."""

    where: str = "?"


def where(obj: Any, fallback: str) -> str:
    """`file line N` of a record read by this module, else `fallback`."""
    return obj.where if isinstance(obj, Located) else fallback


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror})") from None


class _LocatingDecoder(json.JSONDecoder):
    """The pure-Python JSON scanner with objects tagged by their starting line."""

    def __init__(self, path: Path, text: str) -> None:
        super().__init__()
        newlines = [i for i, ch in enumerate(text) if ch == "\n"]

        def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
            obj, end = JSONObject(s_and_end, *args)
            located = Located(obj)
            located.where = f"{path} line {bisect.bisect_left(newlines, s_and_end[1]) + 1}"
            return located, end

        self.parse_object = parse_object
        self.scan_once = py_make_scanner(self)


def read_json(path: Path) -> Any:
    """Parse a JSON file; its objects are `Located`."""
    text = _read_text(path)
    try:
        return _LocatingDecoder(path, text).decode(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} line {exc.lineno} column {exc.colno}: malformed JSON ({exc.msg})") from None


def iter_jsonl(path: Path) -> Iterator[Located]:
    """The objects of a JSONL file, blank lines skipped."""
    text = _read_text(path)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path} line {lineno}: expected a JSON object, got {type(obj).__name__}")
        located = Located(obj)
        located.where = f"{path} line {lineno}"
        yield located


def require_str(record: Located, key: str, *aliases: str) -> str:
    """A non-empty string field (the first of `key` and `aliases` present)."""
    for name in (key, *aliases):
        if name in record:
            value = record[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name.endswith("id"):
                return str(value)
            if not isinstance(value, str) or not value.strip():
                raise DatasetError(f"{record.where}: field {name!r} must be a non-empty string")
            return value
    raise DatasetError(f"{record.where}: missing field {key!r}")


def optional_str(record: Located, key: str) -> str | None:
    if record.get(key) is None:
        return None
    return require_str(record, key)


def str_list(record: Located, key: str, *aliases: str, required: bool = False) -> list[str]:
    """A list of strings; a single string is a list of one."""
    for name in (key, *aliases):
        if name in record and record[name] is not None:
            value = record[name]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DatasetError(f"{record.where}: field {name!r} must be a string or a list of strings")
            return [v for v in value if v.strip()]
    if required:
        raise DatasetError(f"{record.where}: missing field {key!r}")
    return []


def need(condition: bool, record: Located | str, message: str) -> None:
    """Raise a DatasetError at the record's location unless `condition` holds."""
    if not condition:
        place = record.where if isinstance(record, Located) else record
        raise DatasetError(f"{place}: {message}")
