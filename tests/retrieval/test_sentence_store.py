"""Sentences found and embedded at ingest: stored with their chunk (SQLite and PostgreSQL),
replaced on re-ingest, gone with a delete, and read by the extractive reader with the same
result as embedding them at question time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from quarry.agents.reader import ExtractiveReader
from quarry.core.types import Evidence, SourceDocument
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.retrieval.sentence_store import ChunkSentencesRow, dequantise, quantise
from quarry.retrieval.sentences import candidate_sentences, embedding_texts
from quarry.retrieval.sparse import Analyzer
from tests.conftest import drop_schema, make_settings

DAMS = (
    "# Dams of the valley\n\n"
    "The Hoover Dam was completed in 1936 on the Colorado River. It was built by a consortium "
    "called Six Companies. Its reservoir, Lake Mead, is the largest in the United States.\n\n"
    "| dam | year |\n|---|---|\n| Hoover | 1936 |\n\n"
    "Glen Canyon Dam was finished in 1966 upstream of it. The dam forms Lake Powell."
)
BRIDGES = (
    "The Golden Gate Bridge opened in 1937. It was designed by Joseph Strauss with Charles Ellis. "
    "The bridge spans the strait between San Francisco Bay and the Pacific Ocean."
)


@pytest.fixture(params=["sqlite", "postgresql"])
def lib(request: pytest.FixtureRequest, tmp_path: Path, embedder: SentenceEmbedder) -> Iterator[Library]:
    storage = {}
    if request.param == "postgresql":
        storage = {"database_url": request.getfixturevalue("postgres_url")}
    library = Library(
        make_settings(tmp_path, storage=storage, ingest={"chunk_size": 48, "chunk_overlap": 8}), embedder=embedder
    )
    yield library
    drop_schema(library.store.engine)
    library.close()


def _rows(library: Library) -> dict[int, ChunkSentencesRow]:
    with library.store.session() as s:
        return {r.chunk_id: r for r in s.scalars(select(ChunkSentencesRow))}


def test_quantised_vectors_keep_their_cosines(embedder: SentenceEmbedder) -> None:
    vectors = embedder.encode(["The dam was finished in 1936.", "A bridge opened in 1937.", "Lake Mead is large."])
    codes, scales = quantise(vectors)
    back = dequantise(codes, scales, vectors.shape[1])
    assert back.shape == vectors.shape
    assert np.abs(back @ vectors.T - vectors @ vectors.T).max() < 0.01
    assert len(codes) == vectors.size  # one byte a dimension


def test_ingest_stores_each_chunks_sentences_and_reingest_and_delete_keep_them_in_step(lib: Library) -> None:
    lib.create_collection("c")
    lib.ingest_documents("c", [_source("dams.md", DAMS), _source("bridges.md", BRIDGES)])
    chunks = _all_chunks(lib, "c")
    rows = _rows(lib)
    assert set(rows) == set(chunks)  # every chunk, nothing else
    for chunk_id, text in chunks.items():
        stored = lib.sentences([chunk_id])[chunk_id]
        expected, prose = candidate_sentences(text)
        assert stored.spans == [(s.start, s.end) for s in expected] and stored.prose == prose
        if expected:  # the stored embeddings are the sentences' own
            fresh = lib.embedder.encode(embedding_texts(expected))
            assert np.min(np.sum(fresh * stored.vectors, axis=1)) > 0.99

    lib.ingest_documents("c", [_source("dams.md", DAMS.replace("1936", "1935"))])  # re-ingest: new chunks
    after = _all_chunks(lib, "c")
    assert set(_rows(lib)) == set(after)
    assert not set(after) & {cid for cid, t in chunks.items() if "1936" in t}

    lib.delete_document("c", "dams.md")
    left = _all_chunks(lib, "c")
    assert set(_rows(lib)) == set(left) and all("Golden Gate" in t or "bridge" in t for t in left.values())
    lib.delete_collection("c")
    with lib.store.session() as s:
        assert s.scalar(select(func.count()).select_from(ChunkSentencesRow)) == 0


def test_reader_reads_stored_sentences_as_it_reads_fresh_ones(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    """A collection ingested with sentence_vectors off (as one ingested before revision 0003)
    answers from sentences embedded at question time; one ingested with them answers the same."""
    answers = {}
    for stored in (True, False):
        settings = make_settings(
            tmp_path / str(stored), ingest={"sentence_vectors": stored, "chunk_size": 48, "chunk_overlap": 8}
        )
        library = Library(settings, embedder=embedder)
        try:
            library.create_collection("c")
            library.ingest_documents("c", [_source("dams.md", DAMS), _source("bridges.md", BRIDGES)])
            assert bool(_rows(library)) is stored
            reader = ExtractiveReader(embedder, Analyzer(), stored=library.sentences)
            got = []
            for question in ("When was the Hoover Dam completed?", "Who designed the Golden Gate Bridge?"):
                hits = library.search("c", question, k=5, rerank=False, reorder=False)
                evidence = [Evidence.from_hit(h) for h in hits]
                reading = reader.read(question, evidence)
                ranked = reader.rank(question, evidence)
                got.append((reading.answer, [s.text for s in ranked[:4]], [round(s.score, 2) for s in ranked[:4]]))
            answers[stored] = got
        finally:
            library.close()
    assert answers[True] == answers[False]
    assert answers[True][0][0] == "1936" and "Joseph Strauss" in answers[True][1][0]


def _source(name: str, text: str) -> SourceDocument:
    return text_document(text, name, markdown=True)


def _all_chunks(library: Library, collection: str) -> dict[int, str]:
    row = library.collection(collection)
    ids = library.store.chunk_ids(row.id)
    return {cid: c.text for cid, c in library.store.chunks(ids).items()}
