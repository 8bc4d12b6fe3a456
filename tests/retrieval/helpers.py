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
