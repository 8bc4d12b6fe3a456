"""Checking uploads before anything is stored: names, sizes, types and content."""

from __future__ import annotations

import asyncio
import re

from fastapi import HTTPException, UploadFile

from quarry.core.settings import Settings
from quarry.retrieval.errors import DocumentError, DocumentTooLargeError, UnsupportedTypeError
from quarry.retrieval.loaders import load_bytes, safe_source_name

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]|(^|[/\\])\.\.([/\\]|$)|^[/\\]")
_CHUNK = 1024 * 1024


async def read_uploads(files: list[UploadFile], settings: Settings) -> list[tuple[str, bytes]]:
    """(source name, bytes) for every file, or an HTTP error naming each bad file; nothing
    is stored unless every file is good."""
    if not files:
        raise HTTPException(422, "no files in the upload")
    if len(files) > settings.service.max_upload_files:
        raise HTTPException(413, f"{len(files)} files; at most {settings.service.max_upload_files} per upload")
    total = 0
    out: list[tuple[str, bytes]] = []
    errors: list[dict[str, str]] = []
    codes: set[int] = set()
    for upload in files:
        raw = upload.filename or ""
        if not raw or _UNSAFE.search(raw):
            errors.append(
                {"file": repr(raw), "error": "unsafe file name (path, parent directory or control characters)"}
            )
            codes.add(400)
            continue
        data = bytearray()
        while chunk := await upload.read(_CHUNK):
            data += chunk
            total += len(chunk)
            if total > settings.service.max_upload_bytes:
                raise HTTPException(413, f"the upload is over {settings.service.max_upload_bytes:,} bytes")
        source = safe_source_name(raw)
        try:
            problems = await asyncio.to_thread(_check, bytes(data), source, settings)
        except DocumentTooLargeError as exc:
            errors.append({"file": source, "error": str(exc)})
            codes.add(413)
            continue
        except UnsupportedTypeError as exc:
            errors.append({"file": source, "error": str(exc)})
            codes.add(415)
            continue
        except DocumentError as exc:
            errors.append({"file": source, "error": str(exc)})
            codes.add(422)
            continue
        if problems:
            errors.extend({"file": source, "error": p} for p in problems)
            codes.add(422)
            continue
        out.append((source, bytes(data)))
    if errors:
        code = codes.pop() if len(codes) == 1 else 422
        detail = "; ".join(
            f"{e['file']}: {e['error']}" if not e["error"].startswith(e["file"]) else e["error"] for e in errors
        )
        raise HTTPException(code, {"message": f"rejected upload: {detail}", "errors": errors})
    return out


def _check(data: bytes, source: str, settings: Settings) -> list[str]:
    """Parse the file as ingestion will; the problems of JSON records come back as a list."""
    return [str(item) for item in load_bytes(data, source, settings.ingest) if isinstance(item, DocumentError)]
