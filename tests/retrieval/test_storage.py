"""The metadata store on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from quarry.core.types import Chunk, DocumentStatus, SourceDocument
from quarry.retrieval.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DocumentNotFoundError,
    InvalidNameError,
)
from quarry.retrieval.storage import PreparedDocument, Store

DIM = 4


def _doc(source: str, text: str, digest: str) -> SourceDocument:
    return SourceDocument(
        source=source,
        title=source.upper(),
        text=text,
        media_type="text/plain",
        content_hash=digest,
        size_bytes=len(text),
    )


def _prepared(source: str, texts: list[str], digest: str = "h1") -> PreparedDocument:
    full = " ".join(texts)
    chunks, pos = [], 0
    for i, t in enumerate(texts):
        chunks.append(Chunk(ordinal=i, text=t, start_char=pos, end_char=pos + len(t), token_count=len(t.split())))
        pos += len(t) + 1
    vectors = np.eye(DIM, dtype=np.float32)[: len(texts)]
    return PreparedDocument(_doc(source, full, digest), chunks, vectors)


def test_collections_create_list_delete(store: Store) -> None:
    info = store.create_collection("alpha", "model-x", DIM)
    assert info.name == "alpha"
    with pytest.raises(CollectionExistsError):
        store.create_collection("alpha", "model-x", DIM)
    store.create_collection("beta", "model-x", DIM)
    assert [c.name for c in store.collections()] == ["alpha", "beta"]
    store.delete_collection("alpha")
    with pytest.raises(CollectionNotFoundError):
        store.collection("alpha")
    assert [c.name for c in store.collections()] == ["beta"]


@pytest.mark.parametrize("name", ["", "../etc", "a b", "x" * 65, "-lead", "semi;colon", "naïve"])
def test_collection_names_are_validated(store: Store, name: str) -> None:
    with pytest.raises(InvalidNameError):
        store.create_collection(name, "m", DIM)


def test_write_document_with_chunks_and_embeddings(store: Store) -> None:
    cid = store.create_collection("c", "m", DIM).id
    [result] = store.write_documents(cid, [_prepared("a.txt", ["one two", "three four"])])
    assert not result.replaced and len(result.chunk_ids) == 2
    chunks = store.chunks(result.chunk_ids)
    assert [chunks[i].text for i in result.chunk_ids] == ["one two", "three four"]
    assert chunks[result.chunk_ids[0]].document == "a.txt"
    ids, vectors = store.embeddings(result.chunk_ids, DIM)
    assert ids.tolist() == sorted(result.chunk_ids)
    np.testing.assert_array_equal(vectors, np.eye(DIM, dtype=np.float32)[:2])
    [doc] = store.documents(cid)
    assert doc.status == DocumentStatus.INDEXED and doc.chunk_count == 2 and doc.content_hash == "h1"
    assert store.document_hashes(cid) == {"a.txt": ("h1", "indexed")}
    assert [c.name for c in store.collections()][0] == "c"
    assert store.collections()[0].chunk_count == 2


def test_replacing_a_document_swaps_its_chunks(store: Store) -> None:
    cid = store.create_collection("c", "m", DIM).id
    [first] = store.write_documents(cid, [_prepared("a.txt", ["old text", "more old"])])
    [second] = store.write_documents(cid, [_prepared("a.txt", ["new text"], digest="h2")])
    assert second.replaced and second.document_id == first.document_id
    assert sorted(second.removed_chunk_ids) == sorted(first.chunk_ids)
    assert store.chunk_ids(cid).tolist() == second.chunk_ids
    assert store.chunks(first.chunk_ids) == {}


def test_chunk_ids_are_never_reused(store: Store) -> None:
    """Index entries are keyed by chunk id: a deleted id must not come back."""
    cid = store.create_collection("c", "m", DIM).id
    [r1] = store.write_documents(cid, [_prepared("a.txt", ["x", "y"])])
    store.delete_document(cid, r1.document_id)
    [r2] = store.write_documents(cid, [_prepared("b.txt", ["z"])])
    assert min(r2.chunk_ids) > max(r1.chunk_ids)


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    cid = store.create_collection("c", "m", DIM).id
    good = _prepared("good.txt", ["fine"])
    bad = PreparedDocument(_doc("bad.txt", "x", "h"), good.chunks, np.zeros((0, DIM), np.float32))  # no vectors
    with pytest.raises(IndexError):
        store.write_documents(cid, [good, bad])
    assert store.documents(cid) == []
    assert store.chunk_ids(cid).tolist() == []


def test_record_failure_keeps_an_indexed_version(store: Store) -> None:
    cid = store.create_collection("c", "m", DIM).id
    store.write_documents(cid, [_prepared("a.txt", ["kept"])])
    store.record_failure(cid, "a.txt", "text/plain", "a.txt: corrupt")
    store.record_failure(cid, "new.pdf", "application/pdf", "new.pdf: corrupt or unreadable PDF")
    docs = {d.source: d for d in store.documents(cid)}
    assert docs["a.txt"].status == DocumentStatus.INDEXED and docs["a.txt"].error == "a.txt: corrupt"
    assert docs["new.pdf"].status == DocumentStatus.FAILED and "unreadable" in (docs["new.pdf"].error or "")
    assert len(store.chunk_ids(cid)) == 1


def test_delete_document_and_collection_cascade(store: Store) -> None:
    cid = store.create_collection("c", "m", DIM).id
    [r] = store.write_documents(cid, [_prepared("a.txt", ["one", "two"]), _prepared("b.txt", ["three"])])[:1]
    removed = store.delete_document(cid, r.document_id)
    assert sorted(removed) == sorted(r.chunk_ids)
    with pytest.raises(DocumentNotFoundError):
        store.delete_document(cid, r.document_id)
    assert len(store.chunk_ids(cid)) == 1
    store.delete_collection("c")
    other = store.create_collection("c", "m", DIM).id
    assert other != cid and store.chunk_ids(other).tolist() == []


def test_find_document_and_filters(store: Store) -> None:
    cid = store.create_collection("c", "m", DIM).id
    res = store.write_documents(
        cid, [_prepared("docs/a_1.md", ["a"]), _prepared("docs/b.md", ["b"]), _prepared("x/c.txt", ["c"])]
    )
    assert store.find_document(cid, "docs/b.md").id == res[1].document_id
    assert store.find_document(cid, str(res[2].document_id)).source == "x/c.txt"
    with pytest.raises(DocumentNotFoundError):
        store.find_document(cid, "nope")
    assert store.chunk_ids_where(cid, document_ids=[res[0].document_id]).tolist() == res[0].chunk_ids
    assert sorted(store.chunk_ids_where(cid, sources=["docs/*"]).tolist()) == sorted(
        res[0].chunk_ids + res[1].chunk_ids
    )
    # '_' in a glob is literal, not SQL's single-character wildcard
    assert store.chunk_ids_where(cid, sources=["docs/a_*"]).tolist() == res[0].chunk_ids
    assert store.chunk_ids_where(cid, sources=["docs/a?1*"]).tolist() == []
