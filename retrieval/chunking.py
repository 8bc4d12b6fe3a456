"""Split documents into token-sized chunks that keep exact character offsets and the
heading path they sit under. Splitting is llama-index's; sections and offsets are ours."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from quarry.core.types import Chunk, SourceDocument

Tokenize = Callable[[str], list[int]]


class Chunker:
    """Markdown-aware sentence chunker sized in tokens of the embedding model."""

    def __init__(self, tokenize: Tokenize, chunk_size: int, chunk_overlap: int) -> None:
        from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

        self._tokenize = tokenize
        self._splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=tokenize)
        self._sections = MarkdownNodeParser()

    def split(self, doc: SourceDocument) -> list[Chunk]:
        """Chunks of `doc` in reading order; `text[start_char:end_char] == chunk.text`."""
        chunks: list[Chunk] = []
        page_starts: list[int] = doc.metadata.get("page_starts") or []
        for base, section, heading in self._iter_sections(doc):
            for start, end in self._split_section(section):
                text = section[start:end]
                meta: dict[str, Any] = {}
                if page_starts:
                    meta["page"] = bisect.bisect_right(page_starts, base + start)
                    meta["page_end"] = bisect.bisect_right(page_starts, base + end - 1)
                chunks.append(
                    Chunk(
                        ordinal=len(chunks),
                        text=text,
                        start_char=base + start,
                        end_char=base + end,
                        token_count=len(self._tokenize(text)),
                        heading=heading,
                        metadata=meta,
                    )
                )
        return chunks

    def _iter_sections(self, doc: SourceDocument) -> list[tuple[int, str, str]]:
        """(offset, text, heading context) of each section; one section for plain text."""
        if not doc.metadata.get("markdown"):
            return [(0, doc.text, doc.title)]
        from llama_index.core import Document as LlamaDocument

        nodes = self._sections.get_nodes_from_documents([LlamaDocument(text=doc.text)])
        sections: list[tuple[int, str, str]] = []
        for node in nodes:
            content = node.get_content()
            start = node.start_char_idx
            if start is None or doc.text[start : start + len(content)] != content:
                start = doc.text.find(content)
            if start < 0 or not content.strip():
                continue
            first, _, rest = content.partition("\n")
            own = first.lstrip("#").strip() if first.startswith("#") else ""
            if own and not rest.strip() and len(nodes) > 1:
                continue  # a heading with nothing under it: kept as context of what follows
            path = [p for p in str(node.metadata.get("header_path", "")).split("/") if p]
            parts = [doc.title] + [p for p in (*path, own) if p and p != doc.title]
            sections.append((start, content, " > ".join(parts)))
        return sections or [(0, doc.text, doc.title)]

    def _split_section(self, text: str) -> list[tuple[int, int]]:
        from llama_index.core import Document as LlamaDocument

        spans: list[tuple[int, int]] = []
        cursor = 0
        for node in self._splitter.get_nodes_from_documents([LlamaDocument(text=text)]):
            content = node.get_content()
            start = node.start_char_idx
            if start is None or text[start : start + len(content)] != content:
                start = text.find(content, max(0, cursor - len(content)))
            if start < 0:
                start = text.find(content)
            if start < 0 or not content.strip():
                continue
            spans.append((start, start + len(content)))
            cursor = start + 1
        return spans
