"""Turn files and raw text into `SourceDocument`s.

Loaders return text in which headings, where the format has them (Markdown, HTML, DOCX),
are Markdown `#` lines, so that one chunker can keep heading context for every format.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from quarry.core.settings import IngestSettings
from quarry.core.types import SourceDocument
from quarry.retrieval.errors import (
    CorruptDocumentError,
    DocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    UndecodableTextError,
    UnsupportedTypeError,
)
from quarry.retrieval.unzip import read_members, repack

MEDIA_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
}
_MAX_NAME = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_source_name(name: str) -> str:
    """A display- and storage-safe document name: no control characters, no absolute or
    parent-directory components, bounded length."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    name = _CONTROL.sub("", name)
    parts = [p for p in name.split("/") if p not in ("", ".", "..")]
    cleaned = "/".join(parts).strip()
    if not cleaned:
        raise DocumentError(f"document name {name!r} is empty once unsafe characters are removed")
    return cleaned[-_MAX_NAME:]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_type_for(name: str) -> str:
    name = _CONTROL.sub("", name)
    base = name.rsplit("/", 1)[-1]  # a source name may hold folders: `docs/.txt` is a `.txt` file
    suffix = Path(base).suffix.lower() or (base.lower() if base.startswith(".") else "")
    try:
        return MEDIA_TYPES[suffix]
    except KeyError:
        known = ", ".join(sorted(MEDIA_TYPES))
        raise UnsupportedTypeError(
            f"{name}: unsupported file type {suffix or '(no extension)'!r}; supported: {known}"
        ) from None


def _walk_name(raw: str) -> str:
    """A source name for a file found on disk; a name made only of unsafe characters gets
    a stable stand-in rather than stopping the walk."""
    try:
        return safe_source_name(raw)
    except DocumentError:
        return f"unnamed-{sha256(raw.encode('utf-8', 'surrogateescape'))[:12]}{Path(raw).suffix}"


def iter_files(
    paths: list[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[tuple[Path, str]]:
    """Yield (file path, source name) for files and, recursively, folders. Hidden files and
    folders are skipped in folder walks; symlinked folders are not followed (no loops).

    With `include` globs only the files matching one of them are kept, and files matching an
    `exclude` glob are left out (see `matches_globs`)."""
    for root in paths:
        if not root.exists():
            raise FileNotFoundError(f"no such file or folder: {root}")
        if root.is_file():
            if _selected(root.name, include, exclude):
                yield root, _walk_name(root.name)
            continue
        base = root.resolve().parent
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                path = Path(dirpath) / filename
                inside = path.relative_to(root).as_posix()
                if not _selected(inside, include, exclude):
                    continue
                rel = path.resolve().relative_to(base) if path.resolve().is_relative_to(base) else path
                yield path, _walk_name(str(rel))


def matches_globs(path: str, patterns: Sequence[str]) -> bool:
    """Whether a file's path (relative to the folder given, `/`-separated) matches one of
    `patterns`. A pattern without `/` is matched against the file name, one with `/`
    against the whole relative path (`img/` means everything under `img`); `*` also
    matches across folders."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if "/" not in pattern:
            if fnmatchcase(name, pattern):
                return True
            continue
        pattern = pattern.lstrip("/")
        if pattern.endswith("/"):
            pattern += "*"
        if fnmatchcase(path, pattern):
            return True
    return False


def _selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not matches_globs(path, include):
        return False
    return not (exclude and matches_globs(path, exclude))


def decode_text(data: bytes, name: str) -> str:
    """Decode bytes as text, refusing binary content with a clear message."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise UndecodableTextError(f"{name}: invalid UTF-16 text ({exc.reason})") from None
    if b"\x00" in data[:8192]:
        raise UndecodableTextError(f"{name}: binary content (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UndecodableTextError(
            f"{name}: not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); convert it to UTF-8"
        ) from None
    sample = text[:8192]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f")
    if sample and controls / len(sample) > 0.01:
        raise UndecodableTextError(f"{name}: looks like binary data (control characters), not text")
    return text


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _TextBudget:
    """Counts the characters extracted from one file and stops the extraction as soon as
    they pass `ingest.max_text_chars`, so that a small file cannot expand into gigabytes."""

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.used = name, limit, 0

    def take(self, text: str) -> str:
        self.used += len(text)
        if self.used > self.limit:
            raise DocumentTooLargeError(
                f"{self.name}: more than {self.limit:,} characters of text (ingest.max_text_chars)"
            )
        return text


_ATX = re.compile(r"^[ ]{0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^[ ]{0,3}(=+|-+)[ \t]*$")
_UNNUMBERED = re.compile(r"[ \t]*\{[ \t]*-[ \t]*\}[ \t]*$")  # Pandoc's `# Heading {-}`
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)|!?\[([^\]]*)\]\[[^\]]*\]")
_EMPHASIS = re.compile(r"(\*{1,3}|(?<!\w)_{1,3})(\S(?:.*?\S)?)\1(?!\w)")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")


def readable_heading(text: str) -> str:
    """A heading's words as a title: no attribute blocks (`{ #id }`, `{-}`), closing `#`s,
    links, emphasis, inline-code backticks or HTML tags."""
    text = _ATTRIBUTES.sub("", text)
    text = _UNNUMBERED.sub("", text)
    text = re.sub(r"[ \t]+#+[ \t]*$", "", text)
    text = _IMAGE_OR_LINK.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    text = _TAG.sub("", text)
    text = _INLINE_CODE.sub(lambda m: m.group(0).strip("`").strip(), text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.replace("\\", "").split())


def _first_heading(text: str) -> str | None:
    """The words of the first heading (ATX `#` or setext underlined) outside code fences."""
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        marker = _FENCE_LINE.match(line)
        if fence is not None:
            if marker and marker.group(1)[0] == fence:
                fence = None
            continue
        if marker:
            fence = marker.group(1)[0]
            continue
        match = _ATX.match(line)
        words = None
        if match:
            words = match.group(1)
        elif (
            line.strip()
            and i + 1 < len(lines)
            and _SETEXT_UNDERLINE.match(lines[i + 1])
            and not re.match(r"^[ \t]*([-*+>|]|\d+[.)])[ \t]", line)
            and (i == 0 or not lines[i - 1].strip())
        ):
            words = line
        if words is not None and (title := readable_heading(words)):
            return title
    return None


# MkDocs (Python-Markdown extensions) markup that is layout, not text: attribute lists
# (`{ #id }`, `{: .class }`), mkdocstrings directives (`::: pkg.module.Class` and their
# indented options), snippet includes, abbreviation definitions, HTML comments
_ATTRIBUTE = r"(?:[#.][\w:-]+|[\w-]+=(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s}]+))"
_ATTRIBUTES = re.compile(rf"[ \t]*\{{:?[ \t]*{_ATTRIBUTE}(?:[ \t]+{_ATTRIBUTE})*[ \t]*\}}")
_FENCE_LINE = re.compile(r"^[ \t]*(```+|~~~+)")
_DIRECTIVE = re.compile(r"^([ \t]*):::[ \t]*\S")
_CONTAINER = re.compile(r"^([ \t]*)(!!!|\?\?\?\+?|===)[ \t]*([\w-]*)[ \t]*(?:\"([^\"]*)\")?[ \t]*$")
_LAYOUT_LINE = re.compile(
    r"^[ \t]*(?:-{2}8<-{2}.*|\{\*.*\*\}|\*\[[^\]]+\]:.*|\[TOC\]|\{:?[ \t]*"
    + _ATTRIBUTE
    + r"(?:[ \t]+"
    + _ATTRIBUTE
    + r")*[ \t]*\})[ \t]*$"
)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n", re.DOTALL)


def clean_markdown(text: str) -> tuple[str, str | None]:
    """Markdown without MkDocs layout markup, and the front matter's title if it has one.

    Headings keep their words without `{ #anchor }` blocks; a directive line and its
    indented options go; an admonition, details or tab marker (`!!! note "Title"`) becomes
    its title in bold and its indented body becomes ordinary text. Fenced code is kept as
    it is. The document's text is this cleaned text, so every chunk's offsets index it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    title = None
    front = _FRONT_MATTER.match(text)
    if front:
        found = re.search(r"^title:\s*[\"']?(.+?)[\"']?\s*$", front.group(1), flags=re.MULTILINE)
        title = found.group(1).strip() if found else None
        text = text[front.end() :]
    text = _COMMENT.sub("", text)
    out: list[str] = []
    fence: str | None = None
    skip_below: int | None = None  # drop the indented lines under a directive
    dedent: list[int] = []  # indentation of the containers (admonitions, tabs) we are inside
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" \t"))
        if fence is not None:
            out.append(_outdent(line, dedent))
            if line.strip().startswith(fence):
                fence = None
            continue
        if skip_below is not None:
            if not line.strip() or indent > skip_below:
                continue
            skip_below = None
        if line.strip():
            while dedent and indent <= dedent[-1]:
                dedent.pop()
        marker = _FENCE_LINE.match(line)
        if marker:
            fence = marker.group(1)[0] * 3
            out.append(_outdent(line, dedent))
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            skip_below = len(directive.group(1))
            continue
        container = _CONTAINER.match(line)
        if container:
            label = container.group(4) if container.group(4) is not None else container.group(3).capitalize()
            if label.strip():
                out.append(_outdent(container.group(1), dedent) + f"**{label.strip()}**")
                out.append("")
            dedent.append(len(container.group(1)))
            continue
        if _LAYOUT_LINE.match(line):
            continue
        line = _strip_attributes(line)
        if _ATX.match(line):
            line = _UNNUMBERED.sub("", line)
        out.append(_outdent(line, dedent))
    return "\n".join(out), title


def _outdent(line: str, containers: list[int]) -> str:
    """`line` without the four spaces of indentation each enclosing container adds."""
    for _ in containers:
        if line.startswith("    "):
            line = line[4:]
        elif line.startswith("\t"):
            line = line[1:]
    return line


def _strip_attributes(line: str) -> str:
    """Attribute blocks out of a line, leaving inline code spans alone."""
    if "{" not in line:
        return line
    parts, last = [], 0
    for code in _INLINE_CODE.finditer(line):
        parts.append(_ATTRIBUTES.sub("", line[last : code.start()]))
        parts.append(code.group(0))
        last = code.end()
    parts.append(_ATTRIBUTES.sub("", line[last:]))
    stripped = "".join(parts)
    return stripped.rstrip() if stripped != line else line


def _html_to_text(data: bytes, name: str, budget: _TextBudget) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data, name), "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    for tag in soup.select("a.headerlink, a.anchor-link, a.anchorjs-link"):  # MkDocs/Sphinx/Jupyter `¶`
        tag.decompose()
    title_tag = soup.find("title")
    title = readable_heading(title_tag.get_text(" ", strip=True)) if title_tag else ""
    h1 = soup.find("h1")
    title = title or (readable_heading(h1.get_text(" ", strip=True)) if h1 else "")
    blocks: list[str] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "blockquote"]):
        if el.find_parent(["p", "li", "pre", "td", "blockquote"]):
            continue  # its text is part of an enclosing block
        text = el.get_text(" " if el.name != "pre" else "", strip=el.name != "pre")
        if not text.strip():
            continue
        if el.name and el.name[0] == "h" and el.name[1:].isdigit():
            heading = readable_heading(text.replace("\u00b6", ""))
            if heading:
                blocks.append(budget.take("#" * int(el.name[1:]) + " " + heading))
        elif el.name == "li":
            blocks.append(budget.take("- " + " ".join(text.split())))
        else:
            blocks.append(budget.take(text if el.name == "pre" else " ".join(text.split())))
    if not blocks:
        blocks.append(budget.take(" ".join(body.get_text(" ").split())))
    return "\n\n".join(blocks), title or None


def _pdf_to_text(data: bytes, name: str, budget: _TextBudget) -> tuple[str, dict[str, Any]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise CorruptDocumentError(f"{name}: not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise CorruptDocumentError(f"{name}: the PDF is encrypted")
        pages = [budget.take(_clean(page.extract_text() or "")) for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise CorruptDocumentError(f"{name}: corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    page_starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in pages:
        page_starts.append(offset)
        parts.append(page)
        offset += len(page) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        raise EmptyDocumentError(f"{name}: the PDF has no extractable text (scanned images need OCR)")
    return text, {"page_starts": page_starts}


def _docx_to_text(data: bytes, name: str, settings: IngestSettings, budget: _TextBudget) -> tuple[str, str | None]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml import etree

    if not data.startswith(b"PK"):
        raise CorruptDocumentError(f"{name}: not a DOCX file (not a zip archive)")
    # python-docx inflates every part at once: unpack under our bounds first, then hand it
    # the same parts stored uncompressed
    members = read_members(data, name, settings.max_unzipped_bytes, settings.max_zip_ratio, kind="DOCX")
    try:
        document = docx.Document(io.BytesIO(repack(members)))
        blocks: list[str] = []
        title: str | None = document.core_properties.title or None
        for para in document.paragraphs:
            text = " ".join(budget.take(para.text).split())
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            if style == "Title":
                blocks.append("# " + text)
                title = title or text
            elif style.startswith("Heading") and style[7:].strip().isdigit():
                blocks.append("#" * min(6, int(style[7:].strip())) + " " + text)
            else:
                blocks.append(text)
        for table in document.tables:
            for row in table.rows:
                cells = [" ".join(budget.take(c.text).split()) for c in row.cells]
                if any(cells):
                    blocks.append(" | ".join(cells))
    except (PackageNotFoundError, KeyError, ValueError, etree.LxmlError) as exc:
        raise CorruptDocumentError(f"{name}: corrupt or unreadable DOCX ({type(exc).__name__}: {exc})") from None
    return "\n\n".join(blocks), title


def _record_text(record: Any, where: str, settings: IngestSettings) -> tuple[str, str | None, str | None]:
    if not isinstance(record, dict):
        raise DocumentError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get(settings.json_text_field)
    if not isinstance(text, str) or not text.strip():
        raise DocumentError(f"{where}: missing or empty text field {settings.json_text_field!r}")
    if len(text) > settings.max_text_chars:
        raise DocumentTooLargeError(
            f"{where}: {len(text):,} characters of text; at most {settings.max_text_chars:,} (ingest.max_text_chars)"
        )
    title = record.get(settings.json_title_field)
    rid = record.get(settings.json_id_field)
    return (
        text,
        str(title) if title is not None else None,
        str(rid) if rid is not None and not isinstance(rid, (dict, list)) else None,
    )


def _json_records(data: bytes, name: str, jsonl: bool) -> Iterator[tuple[str, Any | DocumentError]]:
    text = decode_text(data, name)
    if jsonl:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield (
                    f"line {lineno}",
                    DocumentError(f"{name} line {lineno}: malformed JSON ({exc.msg})", source=f"{name}#line{lineno}"),
                )
        return
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptDocumentError(
            f"{name}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
        ) from None
    records = parsed if isinstance(parsed, list) else [parsed]
    for index, record in enumerate(records):
        yield f"record {index}", record


def load_bytes(
    data: bytes, source: str, settings: IngestSettings, media_type: str | None = None
) -> Iterator[SourceDocument | DocumentError]:
    """Load one file's bytes. JSON/JSONL files yield one document per record; a bad record
    yields its error in place, so the good records still load.

    This is the one extraction path of the CLI, the API's upload checks and the workers:
    every problem with the file, a parser's own exceptions included, comes out as a
    `DocumentError` naming it."""
    source = safe_source_name(source)
    try:
        yield from _load(data, source, settings, media_type)
    except (DocumentError, MemoryError):
        raise
    except Exception as exc:  # a parser's own error (lxml, zlib, a bug in a library) is this file's
        raise CorruptDocumentError(f"{source}: cannot read the file ({type(exc).__name__}: {exc})") from None


def _load(
    data: bytes, source: str, settings: IngestSettings, media_type: str | None
) -> Iterator[SourceDocument | DocumentError]:
    if len(data) > settings.max_file_bytes:
        raise DocumentTooLargeError(
            f"{source}: {len(data):,} bytes is over the limit of {settings.max_file_bytes:,} bytes "
            "(ingest.max_file_bytes)"
        )
    media_type = media_type or media_type_for(source)
    if not data.strip():
        raise EmptyDocumentError(f"{source}: the file is empty")
    stem = Path(source).stem
    if media_type in ("application/json", "application/x-ndjson"):
        seen = 0
        for where, record in _json_records(data, source, media_type == "application/x-ndjson"):
            if isinstance(record, DocumentError):
                yield record
                continue
            try:
                text, title, rid = _record_text(record, f"{source} {where}", settings)
            except DocumentError as exc:
                exc.source = safe_source_name(f"{source}#{where.replace(' ', '')}")
                yield exc
                continue
            seen += 1
            key = rid or where.replace(" ", "")
            canonical = json.dumps(record, sort_keys=True, ensure_ascii=False).encode()
            yield SourceDocument(
                source=safe_source_name(f"{source}#{key}"),
                title=title or rid or f"{stem} {where}",
                text=_clean(text),
                media_type="application/json",
                content_hash=sha256(canonical),
                size_bytes=len(canonical),
                metadata={"record": where, **({"record_id": rid} if rid else {})},
            )
        if seen == 0 and media_type == "application/json":
            raise EmptyDocumentError(f"{source}: no records with a {settings.json_text_field!r} field")
        return
    metadata: dict[str, Any] = {}
    title = None
    budget = _TextBudget(source, settings.max_text_chars)
    if media_type == "application/pdf":
        text, metadata = _pdf_to_text(data, source, budget)
    elif media_type.endswith("wordprocessingml.document"):
        text, title = _docx_to_text(data, source, settings, budget)
        metadata["markdown"] = True
    elif media_type == "text/html":
        text, title = _html_to_text(data, source, budget)
        metadata["markdown"] = True
    else:
        text = budget.take(decode_text(data, source))
        metadata["markdown"] = media_type == "text/markdown"
        if metadata["markdown"]:
            text, title = clean_markdown(text)
    text = _clean(text)
    if not text:
        raise EmptyDocumentError(f"{source}: no text in the document")
    if metadata.get("markdown"):
        title = title or _first_heading(text)
    yield SourceDocument(
        source=source,
        title=title or stem,
        text=text,
        media_type=media_type,
        content_hash=sha256(data),
        size_bytes=len(data),
        metadata=metadata,
    )


def load_file(path: Path, source: str, settings: IngestSettings) -> Iterator[SourceDocument | DocumentError]:
    """Load a file from disk, checking its size before reading it."""
    media_type = media_type_for(source)
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise DocumentTooLargeError(
            f"{source}: {size:,} bytes is over the limit of {settings.max_file_bytes:,} bytes (ingest.max_file_bytes)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{source}: cannot read the file ({exc.strerror})") from None
    yield from load_bytes(data, source, settings, media_type)


def text_document(text: str, name: str, title: str | None = None, markdown: bool = False) -> SourceDocument:
    """A document from text given in code or through the API."""
    if not isinstance(text, str):
        raise DocumentError(f"{name}: text must be a string, got {type(text).__name__}")
    front_title = None
    if markdown:
        cleaned, front_title = clean_markdown(text)
        cleaned = _clean(cleaned)
    else:
        cleaned = _clean(text)
    if not cleaned:
        raise EmptyDocumentError(f"{name}: the text is empty")
    data = text.encode("utf-8")
    source = safe_source_name(name)
    return SourceDocument(
        source=source,
        title=title or front_title or (_first_heading(cleaned) if markdown else None) or source,
        text=cleaned,
        media_type="text/markdown" if markdown else "text/plain",
        content_hash=sha256(data),
        size_bytes=len(data),
        metadata={"markdown": markdown},
    )
