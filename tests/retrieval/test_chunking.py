"""Chunking keeps exact offsets, token budgets and heading context."""

from __future__ import annotations

from quarry.core.settings import IngestSettings
from quarry.core.types import SourceDocument
from quarry.retrieval.chunking import Chunker
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.loaders import load_bytes, text_document
from tests.retrieval.helpers import pdf_bytes

MD = (
    """# Guide

Intro paragraph about the guide.

## Install

"""
    + " ".join(f"Step {i} installs part {i} of the system carefully." for i in range(60))
    + """

### Verify

Run the checks and read the output.

## Use

Ask questions.
"""
)


def _chunker(embedder: SentenceEmbedder, size: int = 64, overlap: int = 8) -> Chunker:
    return Chunker(embedder.token_ids, size, overlap)


def test_offsets_are_exact_and_sizes_bounded(embedder: SentenceEmbedder) -> None:
    doc = text_document(MD, name="guide.md", markdown=True)
    chunks = _chunker(embedder).split(doc)
    assert len(chunks) > 5
    for i, c in enumerate(chunks):
        assert c.ordinal == i
        assert doc.text[c.start_char : c.end_char] == c.text
        assert 0 < c.token_count <= 64
    assert [c.start_char for c in chunks] == sorted(c.start_char for c in chunks)


def test_heading_context(embedder: SentenceEmbedder) -> None:
    doc = text_document(MD, name="guide.md", markdown=True)
    chunks = _chunker(embedder).split(doc)
    by_text = {c.heading for c in chunks}
    assert "Guide" in by_text
    assert "Guide > Install" in by_text
    assert "Guide > Install > Verify" in by_text
    verify = next(c for c in chunks if "Run the checks" in c.text)
    assert verify.heading == "Guide > Install > Verify"
    assert verify.context_text.startswith("Guide > Install > Verify\n")


def test_plain_text_uses_title(embedder: SentenceEmbedder) -> None:
    doc = text_document("Just one short line.", name="n.txt", title="Notes")
    [chunk] = _chunker(embedder).split(doc)
    assert chunk.heading == "Notes" and chunk.text == "Just one short line."


def test_pdf_chunks_know_their_page(embedder: SentenceEmbedder) -> None:
    pages = ["\n".join(f"page one line {i} words words" for i in range(30)), "second page begins here"]
    [doc] = list(load_bytes(pdf_bytes(pages), "p.pdf", IngestSettings()))
    assert isinstance(doc, SourceDocument)
    chunks = _chunker(embedder).split(doc)
    assert chunks[0].metadata["page"] == 1
    last = next(c for c in chunks if "second page begins" in c.text)
    assert last.metadata["page_end"] == 2
    assert all(c.metadata["page"] == 2 for c in chunks if c.start_char >= doc.metadata["page_starts"][1])
