"""Collections, documents and chunks in SQL (SQLite by default, PostgreSQL by URL).

The database is the source of truth, embeddings included; the FAISS and BM25 indexes are
derived from it and reconciled against it when they are opened. A document's chunks are
written in the same transaction as the document row, so a crash leaves either the old
version or the new one, never half of either.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from quarry.core.types import Chunk, CollectionInfo, DocumentInfo, DocumentStatus, SourceDocument
from quarry.retrieval.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DocumentNotFoundError,
    InvalidNameError,
)
from quarry.retrieval.migrate import require_head, upgrade

# BIGINT ids, but INTEGER on SQLite, where only an INTEGER PRIMARY KEY is the rowid (and can
# be AUTOINCREMENT). The migrations in retrieval/migrations spell the same type.
_ID = BigInteger().with_variant(Integer, "sqlite")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """Timestamps are stored in UTC; SQLite gives them back without a zone, so one is added."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """The one metadata of every table Quarry keeps (jobs and API keys included: their rows
    subclass it in quarry.workers.jobs and quarry.api.keys). Tables are created and changed
    only by the Alembic revisions in retrieval/migrations."""


DEFAULT_TENANT = "default"


class CollectionRow(Base):
    __tablename__ = "collections"
    __table_args__ = (
        UniqueConstraint("tenant", "name", name="uq_collection_tenant_name"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, index=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped by every change to its chunks
    embedding_model: Mapped[str] = mapped_column(String(512))
    dimension: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "source", name="uq_document_source"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(512))
    title: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class ChunkRow(Base):
    __tablename__ = "chunks"
    # ids are FAISS/BM25 keys: never reused, or a deleted chunk's index entry could revive
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk row joined with its document's name, as retrieval needs it."""

    id: int
    document_id: int
    document: str
    title: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    heading: str
    metadata: dict[str, Any]
    embedding: np.ndarray | None = None

    @property
    def context_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass(frozen=True)
class PreparedDocument:
    """A document ready to be written: chunks and their embeddings."""

    doc: SourceDocument
    chunks: list[Chunk]
    embeddings: np.ndarray  # (len(chunks), dim) float32
    sentences: list[SentenceVectors] | None = None  # per chunk, when ingest.sentence_vectors is on


@dataclass(frozen=True)
class WriteResult:
    document_id: int
    chunk_ids: list[int]
    removed_chunk_ids: list[int]
    replaced: bool
    version: int = 0  # the collection's version after the transaction


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidNameError(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine on the metadata database; SQLite gets WAL, foreign keys and a busy timeout."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Store:
    """Repository over the metadata database."""

    def __init__(self, url: str, echo: bool = False, auto_upgrade: bool = True) -> None:
        """Connect, and bring the schema to the newest revision (`auto_upgrade`), or refuse a
        database that is not there yet with a SchemaOutdatedError naming `quarry db upgrade`."""
        self.url = url
        self.engine: Engine = make_engine(url, echo)
        try:
            if auto_upgrade:
                upgrade(self.engine)
            else:
                require_head(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # collections -------------------------------------------------------------------
    def create_collection(
        self, name: str, embedding_model: str, dimension: int, tenant: str = DEFAULT_TENANT
    ) -> CollectionInfo:
        validate_collection_name(name)
        with self.session() as s:
            if s.scalar(select(CollectionRow.id).where(_named(name, tenant))) is not None:
                raise CollectionExistsError(f"collection {name!r} already exists")
            row = CollectionRow(tenant=tenant, name=name, embedding_model=embedding_model, dimension=dimension)
            s.add(row)
            s.flush()
            return CollectionInfo(id=row.id, name=row.name, created_at=row.created_at)

    def collection(self, name: str, tenant: str = DEFAULT_TENANT) -> CollectionRow:
        with self.session() as s:
            row = s.scalar(select(CollectionRow).where(_named(name, tenant)))
            if row is None:
                raise CollectionNotFoundError(f"no collection named {name!r}")
            return row

    def collection_version(self, collection_id: int) -> int:
        """A counter bumped in the same transaction as every change to a collection's chunks;
        index caches compare it to know when to sync."""
        with self.session() as s:
            return int(s.scalar(select(CollectionRow.version).where(CollectionRow.id == collection_id)) or 0)

    def collections(self, tenant: str | None = DEFAULT_TENANT) -> list[CollectionInfo]:
        """Collections of one tenant (None: of every tenant)."""
        with self.session() as s:
            docs = dict(
                s.execute(
                    select(DocumentRow.collection_id, func.count())
                    .where(DocumentRow.status == DocumentStatus.INDEXED.value)
                    .group_by(DocumentRow.collection_id)
                ).all()
            )
            chunks = dict(
                s.execute(select(ChunkRow.collection_id, func.count()).group_by(ChunkRow.collection_id)).all()
            )
            query = select(CollectionRow).order_by(CollectionRow.name)
            if tenant is not None:
                query = query.where(CollectionRow.tenant == tenant)
            rows = s.scalars(query).all()
            return [
                CollectionInfo(
                    id=r.id,
                    name=r.name,
                    created_at=r.created_at,
                    document_count=int(docs.get(r.id, 0)),
                    chunk_count=int(chunks.get(r.id, 0)),
                )
                for r in rows
            ]

    def delete_collection(self, name: str, tenant: str = DEFAULT_TENANT) -> int:
        with self.session() as s:
            row = s.scalar(select(CollectionRow).where(_named(name, tenant)))
            if row is None:
                raise CollectionNotFoundError(f"no collection named {name!r}")
            s.execute(delete(ChunkRow).where(ChunkRow.collection_id == row.id))
            s.execute(delete(DocumentRow).where(DocumentRow.collection_id == row.id))
            s.delete(row)
            return row.id

    # documents ---------------------------------------------------------------------
    def document_hashes(self, collection_id: int) -> dict[str, tuple[str, str]]:
        """source -> (content hash, status) of every document of a collection."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.source, DocumentRow.content_hash, DocumentRow.status).where(
                    DocumentRow.collection_id == collection_id
                )
            ).all()
            return {r.source: (r.content_hash, r.status) for r in rows}

    def clear_errors(self, collection_id: int, sources: Sequence[str]) -> None:
        """Forget the errors of earlier failed re-ingests of documents now found unchanged."""
        if not sources:
            return
        with self.session() as s:
            for batch in _batches(list(sources), 1000):
                s.execute(
                    update(DocumentRow)
                    .where(
                        DocumentRow.collection_id == collection_id,
                        DocumentRow.source.in_(batch),
                        DocumentRow.error.is_not(None),
                    )
                    .values(error=None)
                )

    def write_documents(self, collection_id: int, prepared: Sequence[PreparedDocument]) -> list[WriteResult]:
        """Insert or replace documents with their chunks, all in one transaction."""
        results: list[WriteResult] = []
        with self.session() as s:
            for item in prepared:
                results.append(self._write_one(s, collection_id, item))
            version = _bump(s, collection_id)
        return [dataclasses.replace(r, version=version) for r in results]

    def _write_one(self, s: Session, collection_id: int, item: PreparedDocument) -> WriteResult:
        doc = item.doc
        row = s.scalar(
            select(DocumentRow).where(DocumentRow.collection_id == collection_id, DocumentRow.source == doc.source)
        )
        removed: list[int] = []
        replaced = row is not None
        if row is None:
            row = DocumentRow(collection_id=collection_id, source=doc.source)
            s.add(row)
        else:
            removed = list(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id == row.id)))
            s.execute(delete(ChunkRow).where(ChunkRow.document_id == row.id))
            replaced = row.status == DocumentStatus.INDEXED.value
        row.title = doc.title
        row.content_hash = doc.content_hash
        row.media_type = doc.media_type
        row.status = DocumentStatus.INDEXED.value
        row.error = None
        row.size_bytes = doc.size_bytes
        row.chunk_count = len(item.chunks)
        row.text = doc.text
        row.meta = {k: v for k, v in doc.metadata.items() if k != "markdown"}
        row.updated_at = _now()
        s.flush()
        chunk_rows = [
            ChunkRow(
                document_id=row.id,
                collection_id=collection_id,
                ordinal=c.ordinal,
                text=c.text,
                start_char=c.start_char,
                end_char=c.end_char,
                token_count=c.token_count,
                heading=c.heading,
                meta=c.metadata,
                embedding=np.ascontiguousarray(item.embeddings[i], dtype=np.float32).tobytes(),
            )
            for i, c in enumerate(item.chunks)
        ]
        s.add_all(chunk_rows)
        s.flush()
        # the passage graph goes in the same transaction (imported here: graph_store reads these rows)
        from quarry.retrieval.graph_store import ChunkText, write_graph

        write_graph(s, collection_id, row.id, doc.title, [ChunkText(c.id, c.text, c.heading) for c in chunk_rows])
        if item.sentences is not None:
            write_sentences(s, [c.id for c in chunk_rows], item.sentences)
        return WriteResult(row.id, [c.id for c in chunk_rows], removed, replaced)

    def record_failure(self, collection_id: int, source: str, media_type: str, error: str) -> None:
        """Note a failed ingest. A previously indexed version stays searchable; the error is
        kept beside it."""
        with self.session() as s:
            row = s.scalar(
                select(DocumentRow).where(DocumentRow.collection_id == collection_id, DocumentRow.source == source)
            )
            if row is None:
                s.add(_placeholder(collection_id, source, media_type, DocumentStatus.FAILED, error))
            else:
                row.error = error
                if row.status != DocumentStatus.INDEXED.value:
                    row.status = DocumentStatus.FAILED.value
                row.updated_at = _now()

    def documents(self, collection_id: int) -> list[DocumentInfo]:
        with self.session() as s:
            coll = s.get(CollectionRow, collection_id)
            rows = s.execute(
                select(
                    DocumentRow.id,
                    DocumentRow.source,
                    DocumentRow.title,
                    DocumentRow.media_type,
                    DocumentRow.content_hash,
                    DocumentRow.status,
                    DocumentRow.error,
                    DocumentRow.size_bytes,
                    DocumentRow.chunk_count,
                    DocumentRow.created_at,
                    DocumentRow.updated_at,
                )
                .where(DocumentRow.collection_id == collection_id)
                .order_by(DocumentRow.source)
            ).all()
            name = coll.name if coll else ""
            return [
                DocumentInfo(
                    collection=name,
                    **{**r._asdict(), "created_at": _aware(r.created_at), "updated_at": _aware(r.updated_at)},
                )
                for r in rows
            ]

    def find_document(self, collection_id: int, key: str | int) -> DocumentRow:
        """A document by id or by source name."""
        with self.session() as s:
            cond = DocumentRow.source == str(key)
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                cond = cond | (DocumentRow.id == int(key))
            row = s.scalar(select(DocumentRow).where(DocumentRow.collection_id == collection_id, cond).limit(1))
            if row is None:
                raise DocumentNotFoundError(f"no document {key!r} in this collection")
            return row

    def delete_document(self, collection_id: int, document_id: int) -> list[int]:
        """Delete a document and its chunks; returns the removed chunk ids."""
        with self.session() as s:
            row = s.get(DocumentRow, document_id)
            if row is None or row.collection_id != collection_id:
                raise DocumentNotFoundError(f"no document with id {document_id} in this collection")
            ids = list(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id == document_id)))
            s.execute(delete(ChunkRow).where(ChunkRow.document_id == document_id))
            s.delete(row)
            _bump(s, collection_id)
            return ids

    def mark_queued(self, collection_id: int, documents: Sequence[tuple[str, str]]) -> None:
        """Rows in state `queued` for (source, media type) pairs not in the collection yet;
        documents already there keep serving their current version until replaced."""
        with self.session() as s:
            existing = set(
                s.scalars(
                    select(DocumentRow.source).where(
                        DocumentRow.collection_id == collection_id,
                        DocumentRow.source.in_([src for src, _ in documents]),
                    )
                )
            )
            s.execute(  # a failed earlier attempt is queued again
                update(DocumentRow)
                .where(
                    DocumentRow.collection_id == collection_id,
                    DocumentRow.source.in_([src for src, _ in documents]),
                    DocumentRow.status == DocumentStatus.FAILED.value,
                )
                .values(status=DocumentStatus.QUEUED.value, error=None, updated_at=_now())
            )
            for source, media_type in dict(documents).items():
                if source not in existing:
                    s.add(_placeholder(collection_id, source, media_type, DocumentStatus.QUEUED))

    def set_status_where_pending(self, collection_id: int, sources: Sequence[str], status: DocumentStatus) -> None:
        """Advance documents that are not indexed yet (an indexed version keeps its state)."""
        with self.session() as s:
            s.execute(
                update(DocumentRow)
                .where(
                    DocumentRow.collection_id == collection_id,
                    DocumentRow.source.in_(list(sources)),
                    DocumentRow.status.not_in([DocumentStatus.INDEXED.value, DocumentStatus.FAILED.value]),
                )
                .values(status=status.value, updated_at=_now())
            )

    # chunks ------------------------------------------------------------------------
    def chunk_ids(self, collection_id: int) -> np.ndarray:
        with self.session() as s:
            ids = s.scalars(select(ChunkRow.id).where(ChunkRow.collection_id == collection_id)).all()
            return np.fromiter(ids, dtype=np.int64, count=len(ids))

    def embeddings(self, ids: Iterable[int], dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for the given chunk ids that exist, in id order."""
        wanted = sorted(set(int(i) for i in ids))
        out_ids: list[int] = []
        vectors: list[np.ndarray] = []
        with self.session() as s:
            for batch in _batches(wanted, 5000):
                for cid, blob in s.execute(
                    select(ChunkRow.id, ChunkRow.embedding).where(ChunkRow.id.in_(batch)).order_by(ChunkRow.id)
                ):
                    out_ids.append(cid)
                    vectors.append(np.frombuffer(blob, dtype=np.float32))
        if not vectors:
            return np.zeros(0, dtype=np.int64), np.zeros((0, dimension), dtype=np.float32)
        return np.asarray(out_ids, dtype=np.int64), np.vstack(vectors)

    def chunks(self, ids: Iterable[int], with_embeddings: bool = False) -> dict[int, StoredChunk]:
        wanted = list({int(i) for i in ids})
        out: dict[int, StoredChunk] = {}
        columns = [
            ChunkRow.id,
            ChunkRow.document_id,
            DocumentRow.source,
            DocumentRow.title,
            ChunkRow.ordinal,
            ChunkRow.text,
            ChunkRow.start_char,
            ChunkRow.end_char,
            ChunkRow.heading,
            ChunkRow.meta,
        ]
        if with_embeddings:
            columns.append(ChunkRow.embedding)
        with self.session() as s:
            for batch in _batches(wanted, 5000):
                rows = s.execute(
                    select(*columns)
                    .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
                    .where(ChunkRow.id.in_(batch))
                )
                for r in rows:
                    out[r.id] = StoredChunk(
                        id=r.id,
                        document_id=r.document_id,
                        document=r.source,
                        title=r.title,
                        ordinal=r.ordinal,
                        text=r.text,
                        start_char=r.start_char,
                        end_char=r.end_char,
                        heading=r.heading,
                        metadata=dict(r.meta or {}),
                        embedding=np.frombuffer(r.embedding, dtype=np.float32) if with_embeddings else None,
                    )
        return out

    def chunk_ids_where(
        self, collection_id: int, document_ids: Sequence[int] | None = None, sources: Sequence[str] | None = None
    ) -> np.ndarray:
        """Chunk ids of documents matching the filters (ids, or source names where `*` is a
        wildcard)."""
        query = select(ChunkRow.id).join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
        query = query.where(ChunkRow.collection_id == collection_id)
        if document_ids:
            query = query.where(DocumentRow.id.in_([int(d) for d in document_ids]))
        if sources:
            conds = [
                DocumentRow.source.like(_like_pattern(src), escape="\\") if "*" in src else DocumentRow.source == src
                for src in sources
            ]
            cond = conds[0]
            for extra in conds[1:]:
                cond = cond | extra
            query = query.where(cond)
        with self.session() as s:
            ids = s.scalars(query).all()
            return np.fromiter(ids, dtype=np.int64, count=len(ids))

    def sentences(self, ids: Iterable[int], dimension: int) -> dict[int, SentenceVectors]:
        """The candidate sentences stored at ingest for those chunks that have them."""
        with self.session() as s:
            return read_sentences(s, ids, dimension)

    def document_text(self, document_id: int) -> str:
        with self.session() as s:
            row = s.get(DocumentRow, document_id)
            if row is None:
                raise DocumentNotFoundError(f"no document with id {document_id}")
            return row.text


def _placeholder(
    collection_id: int, source: str, media_type: str, status: DocumentStatus, error: str | None = None
) -> DocumentRow:
    """The row of a document that has no indexed version (yet): queued or failed."""
    return DocumentRow(
        collection_id=collection_id,
        source=source,
        title=source,
        content_hash="",
        media_type=media_type,
        status=status.value,
        error=error,
    )


def _named(name: str, tenant: str) -> Any:
    return (CollectionRow.name == name) & (CollectionRow.tenant == tenant)


def _bump(s: Session, collection_id: int) -> int:
    s.execute(update(CollectionRow).where(CollectionRow.id == collection_id).values(version=CollectionRow.version + 1))
    return int(s.scalar(select(CollectionRow.version).where(CollectionRow.id == collection_id)) or 0)


def _like_pattern(glob: str) -> str:
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")  # first: the statements below may wait on a writer
    cur.execute("PRAGMA foreign_keys=ON")
    # switching to WAL needs the database to itself; once a file is in WAL it stays there,
    # so a connection that finds it so leaves it alone rather than race another's writes
    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# The passage-graph and sentence rows belong to this metadata too; imported last, since they
# subclass Base.
from quarry.retrieval import graph_tables  # noqa: E402, F401
from quarry.retrieval.sentence_store import SentenceVectors, read_sentences, write_sentences  # noqa: E402
