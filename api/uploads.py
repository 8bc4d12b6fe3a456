"""Checking uploads before anything is stored: the body's size while it streams in, then
names, sizes, types and content of every file."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, UploadFile
from starlette.types import Message

from quarry.api.errors import status_for
from quarry.core.settings import Settings
from quarry.retrieval.errors import DocumentError, UnsupportedTypeError
from quarry.retrieval.loaders import load_bytes, media_type_for, safe_source_name

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]|(^|[/\\])\.\.([/\\]|$)|^[/\\]|^[A-Za-z]:[/\\]")
_CHUNK = 1024 * 1024
FRAMING_BYTES = 1024 * 1024  # multipart headers and boundaries allowed on top of the files' bytes


def bounded_request(request: Request, max_upload_bytes: int) -> Request:
    """`request` with a body that may hold at most `max_upload_bytes` of files (plus
    multipart framing): a larger Content-Length is refused before a byte is read, and a body
    sent without one (chunked) stops being read as soon as it passes the limit. The 413 is
    raised from inside the multipart parser, which then closes, and so deletes, the files it
    spooled."""
    limit = max_upload_bytes + FRAMING_BYTES
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise HTTPException(400, f"invalid Content-Length {declared!r}") from None
        if length > limit:
            raise HTTPException(413, _too_large(f"{length:,} bytes", max_upload_bytes))
    received = 0
    upstream = request.receive

    async def receive() -> Message:
        nonlocal received
        message = await upstream()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, _too_large(f"more than {limit:,} bytes", max_upload_bytes))
        return message

    return Request(request.scope, receive)


def _too_large(size: str, max_upload_bytes: int) -> str:
    return f"the upload is {size}; at most {max_upload_bytes:,} bytes of files in one upload (service.max_upload_bytes)"


@dataclass
class CheckedUpload:
    """Files that passed every check, as (source name, bytes), and those left out."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"file", "error"}


async def read_uploads(files: list[UploadFile], settings: Settings, skip_unsupported: bool = False) -> CheckedUpload:
    """The checked files, or an HTTP error naming each bad file; nothing is stored unless
    every file is good. With `skip_unsupported`, files of unsupported types are left out
    (and listed) instead of rejecting the upload."""
    if not files:
        raise HTTPException(422, "no files in the upload")
    if len(files) > settings.service.max_upload_files:
        raise HTTPException(413, f"{len(files)} files; at most {settings.service.max_upload_files} per upload")
    names = _source_names(files)
    checked = CheckedUpload()
    total = 0
    errors: list[dict[str, str]] = []
    codes: set[int] = set()
    for upload, source in zip(files, names, strict=True):
        if skip_unsupported:
            try:
                media_type_for(source)
            except UnsupportedTypeError as exc:
                checked.skipped.append({"file": source, "error": str(exc)})
                continue
        if upload.size is not None and upload.size > settings.ingest.max_file_bytes:
            message = f"{upload.size:,} bytes is over the limit of {settings.ingest.max_file_bytes:,} bytes"
            errors.append({"file": source, "error": f"{message} (ingest.max_file_bytes)"})
            codes.add(413)
            continue
        data = bytearray()
        while chunk := await upload.read(_CHUNK):
            data += chunk
            total += len(chunk)
            if total > settings.service.max_upload_bytes:
                raise HTTPException(413, _too_large(f"over {total:,} bytes", settings.service.max_upload_bytes))
        try:
            problems = await asyncio.to_thread(_check, bytes(data), source, settings)
        except DocumentError as exc:
            errors.append({"file": source, "error": str(exc)})
            codes.add(status_for(exc))
            continue
        if problems:
            errors.extend({"file": source, "error": p} for p in problems)
            codes.add(422)
            continue
        checked.files.append((source, bytes(data)))
    if errors:
        _reject(errors, codes)
    if not checked.files:
        skipped = ", ".join(s["file"] for s in checked.skipped)
        raise HTTPException(422, f"no supported files in the upload (skipped: {skipped})")
    return checked


def _source_names(files: list[UploadFile]) -> list[str]:
    """Each part's document name: its filename, folders kept (`docs/a.md`), made safe.
    Unsafe names and names given twice reject the upload before any content is read."""
    errors: list[dict[str, str]] = []
    names: list[str] = []
    for upload in files:
        raw = upload.filename or ""
        if not raw or _UNSAFE.search(raw):
            errors.append(
                {"file": repr(raw), "error": "unsafe file name (absolute path, parent directory or control characters)"}
            )
            names.append("")
            continue
        try:
            names.append(safe_source_name(raw))
        except DocumentError as exc:
            errors.append({"file": repr(raw), "error": str(exc)})
            names.append("")
    if errors:
        _reject(errors, {400})
    twice = {name: n for name, n in Counter(names).items() if n > 1}
    if twice:
        listed = ", ".join(f"{name} ({n} parts)" for name, n in twice.items())
        raise HTTPException(
            422,
            {
                "message": f"rejected upload: the same file name more than once: {listed}. Documents are "
                "named by their file names, so one would replace the other; send the folder path as "
                "the filename (curl -F 'files=@guide/index.md;filename=guide/index.md')",
                "errors": [{"file": name, "error": f"{n} parts have this name"} for name, n in twice.items()],
            },
        )
    return names


def _reject(errors: list[dict[str, str]], codes: set[int]) -> None:
    code = next(iter(codes)) if len(codes) == 1 else 422
    detail = "; ".join(
        f"{e['file']}: {e['error']}" if not e["error"].startswith(e["file"]) else e["error"] for e in errors
    )
    raise HTTPException(code, {"message": f"rejected upload: {detail}", "errors": errors})


def _check(data: bytes, source: str, settings: Settings) -> list[str]:
    """Parse the file as ingestion will; the problems of JSON records come back as a list."""
    return [str(item) for item in load_bytes(data, source, settings.ingest) if isinstance(item, DocumentError)]
