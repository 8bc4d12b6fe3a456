"""The passage graph in the database: written with a document's chunks (same transaction,
so it is updated and deleted with them), read back as flat arrays for `graph.PassageGraph`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from quarry.retrieval.entities import Mention, extract, normalise
from quarry.retrieval.graph import GraphData
from quarry.retrieval.graph_tables import EntityRow, MentionRow, SubjectRow
from quarry.retrieval.storage import ChunkRow, DocumentRow, Store, _batches

_BATCH = 500


@dataclass(frozen=True)
class ChunkText:
    id: int
    text: str
    heading: str = ""


def write_graph(s: Session, collection_id: int, document_id: int, title: str, chunks: Sequence[ChunkText]) -> None:
    """Record what each chunk mentions and what the document is about. A replaced
    document's old mentions went with its old chunks (foreign-key cascade); its subject
    links are replaced here."""
    s.execute(delete(SubjectRow).where(SubjectRow.document_id == document_id))
    found = [(c.id, extract(c.text, title, c.heading)) for c in chunks]
    names: dict[str, Mention] = {}
    for _, mentions in found:
        for m, _n in mentions:
            names.setdefault(m.key, m)
    subject = normalise(title) if title else ""
    if subject and subject in names:
        names[subject] = Mention(subject, title.strip(), "title")
    ids = _entity_ids(s, collection_id, names)
    rows = [
        {"chunk_id": cid, "entity_id": ids[m.key], "collection_id": collection_id, "count": n}
        for cid, mentions in found
        for m, n in mentions
        if m.key in ids
    ]
    for batch in _batches(rows, _BATCH):
        s.execute(insert(MentionRow), batch)
    if subject in ids:
        s.execute(
            insert(SubjectRow),
            [{"document_id": document_id, "entity_id": ids[subject], "collection_id": collection_id}],
        )


def _entity_ids(s: Session, collection_id: int, names: dict[str, Mention]) -> dict[str, int]:
    ids: dict[str, int] = {}
    keys = list(names)
    for batch in _batches(keys, _BATCH):
        ids.update(_existing(s, collection_id, batch))
    missing = [k for k in keys if k not in ids]
    if missing:
        rows = [
            {"collection_id": collection_id, "key": k, "name": names[k].name, "kind": names[k].kind} for k in missing
        ]
        for batch in _batches(rows, _BATCH):
            s.execute(insert(EntityRow), batch)
        for batch in _batches(missing, _BATCH):
            ids.update(_existing(s, collection_id, batch))
    return ids


def _existing(s: Session, collection_id: int, keys: Sequence[str]) -> dict[str, int]:
    query = select(EntityRow.key, EntityRow.id).where(EntityRow.collection_id == collection_id, EntityRow.key.in_(keys))
    return {key: int(eid) for key, eid in s.execute(query)}


def load_graph(store: Store, collection_id: int) -> GraphData:
    """A collection's graph as arrays (chunks with no mentions still take part)."""
    with store.session() as s:
        chunks = s.execute(select(ChunkRow.id, ChunkRow.document_id).where(ChunkRow.collection_id == collection_id))
        chunk_ids, chunk_docs = _columns(chunks.all(), 2)
        entities = s.execute(
            select(EntityRow.id, EntityRow.key).where(EntityRow.collection_id == collection_id).order_by(EntityRow.id)
        ).all()
        mentions = s.execute(
            select(MentionRow.chunk_id, MentionRow.entity_id).where(MentionRow.collection_id == collection_id)
        ).all()
        subjects = s.execute(
            select(SubjectRow.document_id, SubjectRow.entity_id).where(SubjectRow.collection_id == collection_id)
        ).all()
    m_chunks, m_entities = _columns(mentions, 2)
    s_docs, s_entities = _columns(subjects, 2)
    return GraphData(
        chunk_ids=chunk_ids,
        chunk_documents=chunk_docs,
        entity_ids=np.asarray([e for e, _ in entities], np.int64),
        entity_keys=[k for _, k in entities],
        mention_chunks=m_chunks,
        mention_entities=m_entities,
        subject_documents=s_docs,
        subject_entities=s_entities,
    )


def needs_backfill(store: Store, collection_id: int) -> bool:
    """Whether the collection has chunks but no graph (ingested before the graph existed)."""
    with store.session() as s:
        has_chunks = s.scalar(select(ChunkRow.id).where(ChunkRow.collection_id == collection_id).limit(1))
        has_graph = s.scalar(select(MentionRow.chunk_id).where(MentionRow.collection_id == collection_id).limit(1))
    return has_chunks is not None and has_graph is None


def backfill(store: Store, collection_id: int) -> int:
    """Build the graph of documents that have none, from their stored chunks; returns how
    many documents it read. The caller holds the collection's write lock."""
    with store.session() as s:
        done = set(s.scalars(select(MentionRow.chunk_id).where(MentionRow.collection_id == collection_id)))
        documents = s.execute(
            select(DocumentRow.id, DocumentRow.title).where(DocumentRow.collection_id == collection_id)
        ).all()
    count = 0
    for document_id, title in documents:
        with store.session() as s:
            rows = s.execute(
                select(ChunkRow.id, ChunkRow.text, ChunkRow.heading).where(ChunkRow.document_id == document_id)
            ).all()
            if not rows or any(cid in done for cid, _, _ in rows):
                continue
            write_graph(s, collection_id, document_id, title or "", [ChunkText(c, t, h or "") for c, t, h in rows])
            count += 1
    return count


def _columns(rows: Sequence[Sequence[int]], n: int) -> tuple[np.ndarray, ...]:
    if not rows:
        return tuple(np.zeros(0, np.int64) for _ in range(n))
    # flattened first: numpy reads a list of SQLAlchemy rows item by item, ~100x slower
    array = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=len(rows) * n).reshape(-1, n)
    return tuple(array[:, i] for i in range(n))
