"""Builders for real files of each supported format."""

from __future__ import annotations

import io
from pathlib import Path


def pdf_bytes(pages: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    for page in pages:
        y = 800
        for line in page.split("\n"):
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return buf.getvalue()


def docx_bytes(title: str, sections: list[tuple[str, str]]) -> bytes:
    import docx

    d = docx.Document()
    d.add_heading(title, level=0)
    for heading, body in sections:
        d.add_heading(heading, level=1)
        d.add_paragraph(body)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def docx_bomb(paragraph_chars: int) -> bytes:
    """A real DOCX whose word/document.xml holds one paragraph of `paragraph_chars` letters:
    a few kilobytes that unpack to megabytes (a decompression bomb)."""
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(docx_bytes("Bomb", [("Boom", "x")])))
    head = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>"
    )
    body = head + "a" * paragraph_chars + "</w:t></w:r></w:p></w:body></w:document>"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in source.infolist():
            data = body.encode() if info.filename == "word/document.xml" else source.read(info)
            out.writestr(info.filename, data)
    return buf.getvalue()


def docx_with_broken_xml() -> bytes:
    """A DOCX whose zip is sound but whose word/document.xml is cut in half."""
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(docx_bytes("Broken", [("Half", "the rest is missing")])))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info)
            out.writestr(info.filename, data[: len(data) // 2] if info.filename == "word/document.xml" else data)
    return buf.getvalue()
