"""Each chunk's answer-candidate sentences, found and embedded once at ingest (revision
0003_chunk_sentences), so the extractive reader and the citation check look them up at
question time instead of embedding the same passages' sentences again for every question.

A row holds a chunk's sentence spans (offsets into the chunk's text, as
`sentences.candidate_sentences` finds them) and their embeddings, quantised to int8 with one
scale per sentence: a quarter of float32's size, and cosine similarities within about 0.005
of the float32 ones. The row belongs to its chunk and cascades away with it; a chunk without
one (a collection ingested before this revision, or with `ingest.sentence_vectors` off) is
read the old way, embedding its sentences when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import JSON, Boolean, ForeignKey, LargeBinary, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from quarry.retrieval.sentences import Sentence, candidate_sentences, embedding_texts
from quarry.retrieval.storage import _ID, Base

EncodeFn = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) float32 unit rows


class ChunkSentencesRow(Base):
    """A chunk's candidate sentences: spans [[start, end], ...] and their int8 embeddings."""

    __tablename__ = "chunk_sentences"
    chunk_id: Mapped[int] = mapped_column(
        _ID, ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    spans: Mapped[list[list[int]]] = mapped_column(JSON)
    prose: Mapped[bool] = mapped_column(Boolean)  # the spans are running prose, not the fallback
    vectors: Mapped[bytes] = mapped_column(LargeBinary)  # (n, dim) int8
    scales: Mapped[bytes] = mapped_column(LargeBinary)  # (n,) float32


@dataclass(frozen=True)
class SentenceVectors:
    """A chunk's candidate sentences (offsets into its text) and their unit embeddings;
    `prose` says they are running prose (false: the chunk has none, and these are its whole
    sentences of any kind)."""

    spans: list[tuple[int, int]]
    vectors: np.ndarray  # (len(spans), dim) float32
    prose: bool = True

    def sentences(self, text: str) -> list[Sentence]:
        return [Sentence(text[a:b], a, b) for a, b in self.spans]


StoredSentences = Callable[[list[int]], dict[int, SentenceVectors]]  # chunk ids -> what ingest stored


def quantise(vectors: np.ndarray) -> tuple[bytes, bytes]:
    """int8 codes and per-row scales of float32 rows."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, dtype=np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return codes.tobytes(), scales.tobytes()


def dequantise(codes: bytes, scales: bytes, dim: int) -> np.ndarray:
    scale = np.frombuffer(scales, dtype=np.float32)
    matrix = np.frombuffer(codes, dtype=np.int8).reshape(len(scale), dim).astype(np.float32)
    return matrix * scale[:, None]


def embed_sentences(encode: EncodeFn, texts: Sequence[str]) -> list[SentenceVectors]:
    """Candidate sentences of each text, embedded in one batch."""
    found = [candidate_sentences(text) for text in texts]
    flat = [text for sentences, _ in found for text in embedding_texts(sentences)]
    vectors = encode(flat) if flat else np.zeros((0, 0), dtype=np.float32)
    out, offset = [], 0
    for sentences, prose in found:
        n = len(sentences)
        out.append(SentenceVectors([(s.start, s.end) for s in sentences], vectors[offset : offset + n], prose))
        offset += n
    return out


def write_sentences(s: Session, chunk_ids: Sequence[int], data: Sequence[SentenceVectors]) -> None:
    """Rows for freshly written chunks (inside their transaction)."""
    rows = []
    for chunk_id, item in zip(chunk_ids, data, strict=True):
        codes, scales = quantise(item.vectors) if item.spans else (b"", b"")
        rows.append(
            ChunkSentencesRow(
                chunk_id=chunk_id, spans=[list(p) for p in item.spans], prose=item.prose, vectors=codes, scales=scales
            )
        )
    s.add_all(rows)


def read_sentences(s: Session, chunk_ids: Iterable[int], dim: int) -> dict[int, SentenceVectors]:
    """The stored sentences of those chunks that have them."""
    ids = sorted(set(chunk_ids))
    out: dict[int, SentenceVectors] = {}
    for start in range(0, len(ids), 500):
        for row in s.scalars(select(ChunkSentencesRow).where(ChunkSentencesRow.chunk_id.in_(ids[start : start + 500]))):
            spans = [(int(a), int(b)) for a, b in row.spans]
            vectors = dequantise(row.vectors, row.scales, dim) if spans else np.zeros((0, dim), dtype=np.float32)
            out[row.chunk_id] = SentenceVectors(spans, vectors, bool(row.prose))
    return out
