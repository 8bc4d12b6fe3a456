"""The library of collections: the one entry point the CLI, API and workers use for
ingesting, listing, deleting and searching."""

from __future__ import annotations

import copy
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from quarry.core.errors import ConfigurationError
from quarry.core.settings import Settings, get_settings
from quarry.core.types import CollectionInfo, DocumentInfo, Hit, IngestReport, SourceDocument
from quarry.retrieval.chunking import Chunker
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.errors import CollectionNotFoundError
from quarry.retrieval.graph import PassageGraph
from quarry.retrieval.graph_store import backfill, load_graph, needs_backfill
from quarry.retrieval.indexes import CollectionIndex
from quarry.retrieval.ingest import FileItem, Ingestor, ProgressCallback
from quarry.retrieval.loaders import iter_files
from quarry.retrieval.pipeline import HybridRetriever, SearchMode
from quarry.retrieval.rerank import CrossEncoderReranker
from quarry.retrieval.sentence_store import SentenceVectors
from quarry.retrieval.sparse import Analyzer
from quarry.retrieval.storage import DEFAULT_TENANT, CollectionRow, Store, validate_collection_name

_SENTENCE_CACHE = 10_000  # chunks whose stored sentences a process keeps decoded (~8 KB each)


class Library:
    """Collections of documents with their indexes. Heavy parts load on first use."""

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        embedder: SentenceEmbedder | None = None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        # private when this makes it (quarry ingest, ask or search run without `serve`, which makes its own)
        self.settings.storage.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        storage = self.settings.storage
        self.store = store or Store(storage.resolved_database_url, auto_upgrade=storage.auto_upgrade)
        self.embedder = embedder or SentenceEmbedder(self.settings.embedding, self.settings.storage.data_dir / "models")
        if reranker is None and self.settings.search.rerank_model:
            reranker = CrossEncoderReranker(self.settings.search.rerank_model, self.settings.embedding.device)
        self.retriever = HybridRetriever(self.store, self.embedder, self.settings.search, reranker)
        self._analyzer: Analyzer | None = None
        self._indexes: dict[int, CollectionIndex] = {}
        self._graphs: dict[int, tuple[int, PassageGraph]] = {}  # collection id -> (version, graph)
        self._graph_lock = threading.Lock()
        self._chunker: Chunker | None = None
        # chunk id -> its stored sentences; ids are never reused and a chunk never changes, so
        # an entry is never stale (a tenant's view shares the cache: ids are global)
        self._sentences: OrderedDict[int, SentenceVectors] = OrderedDict()
        self._sentences_lock = threading.Lock()
        self.tenant = DEFAULT_TENANT

    def for_tenant(self, tenant: str) -> Library:
        """A view of this library whose collections are those of `tenant` (models, database
        and index caches are shared)."""
        view = copy.copy(self)
        view.tenant = tenant
        return view

    def close(self) -> None:
        self._indexes.clear()
        self.store.close()

    # collections -------------------------------------------------------------------------
    def create_collection(self, name: str) -> CollectionInfo:
        return self.store.create_collection(name, self.embedder.name, self.embedder.dimension, self.tenant)

    def collection(self, name: str) -> CollectionRow:
        row = self.store.collection(validate_collection_name(name), self.tenant)
        if row.embedding_model != self.embedder.name:
            raise ConfigurationError(
                f"collection {name!r} was embedded with {row.embedding_model!r}, but the configured "
                f"embedding model is {self.embedder.name!r}; set embedding.model to match"
            )
        return row

    def collections(self) -> list[CollectionInfo]:
        infos = self.store.collections(self.tenant)
        for info in infos:
            info.index_kind = self._index_kind(info.id)
        return infos

    def delete_collection(self, name: str) -> None:
        """Delete a collection with its documents and index files. Waits for the collection's
        writer lock, so an ingest or delete running on it finishes first and none writes into
        it afterwards (an ingest waiting for the lock then finds the collection gone)."""
        row = self.store.collection(validate_collection_name(name), self.tenant)
        index = self._index(row.id, reconcile=False)
        with index.write_lock():
            collection_id = self.store.delete_collection(row.name, self.tenant)
            self._indexes.pop(collection_id, None)
            shutil.rmtree(self._index_dir(collection_id), ignore_errors=True)

    def documents(self, name: str) -> list[DocumentInfo]:
        return self.store.documents(self.collection(name).id)

    # ingestion ---------------------------------------------------------------------------
    def ingest_paths(
        self,
        name: str,
        paths: Sequence[Path],
        on_progress: ProgressCallback | None = None,
        create: bool = True,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        skip_unsupported: bool = False,
    ) -> IngestReport:
        """Ingest files and folders (recursively) into a collection; `include`/`exclude` globs
        select files (see `loaders.matches_globs`), and with `skip_unsupported` files of
        unsupported types are reported as skipped rather than failed."""
        found = iter_files([Path(p) for p in paths], include, exclude)
        items = [FileItem(path, source) for path, source in found]
        return self._ingest(name, items, on_progress, create, skip_unsupported=skip_unsupported)

    def ingest_files(
        self,
        name: str,
        files: Sequence[tuple[Path, str]],
        on_progress: ProgressCallback | None = None,
        create: bool = True,
        skip_unsupported: bool = False,
    ) -> IngestReport:
        """Ingest files under given source names (uploads staged under other names)."""
        items = [FileItem(Path(p), source) for p, source in files]
        return self._ingest(name, items, on_progress, create, track=True, skip_unsupported=skip_unsupported)

    def ingest_documents(
        self,
        name: str,
        documents: Iterable[SourceDocument],
        on_progress: ProgressCallback | None = None,
        create: bool = True,
        track_status: bool = False,
    ) -> IngestReport:
        """Ingest documents made in code (see `loaders.text_document`)."""
        return self._ingest(name, list(documents), on_progress, create, track=track_status)

    def _ingest(
        self,
        name: str,
        items: list[FileItem] | list[SourceDocument],
        on_progress: ProgressCallback | None,
        create: bool,
        track: bool = False,
        skip_unsupported: bool = False,
    ) -> IngestReport:
        try:
            row = self.collection(name)
        except CollectionNotFoundError:
            if not create:
                raise
            self.create_collection(name)
            row = self.collection(name)
        index = self._index(row.id, reconcile=False)
        with index.write_lock():
            try:  # deleted while this ingest waited for the lock?
                still = self.store.collection(row.name, self.tenant)
            except CollectionNotFoundError:
                still = None
            if still is None or still.id != row.id:
                raise CollectionNotFoundError(f"collection {name!r} was deleted before this ingest could start")
            index.refresh()
            self._sync(index, row.id, locked=True)
            ingestor = Ingestor(
                self.store,
                self.embedder,
                self.chunker,
                self.settings.ingest,
                track_status=track,
                skip_unsupported=skip_unsupported,
            )
            return ingestor.run(row.name, row.id, index, items, on_progress)

    def delete_document(self, name: str, key: str | int) -> DocumentInfo:
        """Delete a document (by id or source name) with its chunks, vectors and BM25 entries."""
        row = self.collection(name)
        doc = self.store.find_document(row.id, key)
        info = next(d for d in self.store.documents(row.id) if d.id == doc.id)
        index = self._index(row.id, reconcile=False)
        with index.write_lock():
            index.refresh()
            removed = self.store.delete_document(row.id, doc.id)
            index.apply(
                np.zeros(0, np.int64),
                np.zeros((0, index.dimension), np.float32),
                [],
                np.asarray(removed, dtype=np.int64),
            )
            index.save()
        return info

    # search ------------------------------------------------------------------------------
    def search(
        self,
        name: str,
        query: str,
        k: int | None = None,
        document_ids: Sequence[int] | None = None,
        sources: Sequence[str] | None = None,
        mode: SearchMode | str | None = None,
        rerank: bool = True,
        reorder: bool = False,
    ) -> list[Hit]:
        """Top-k hits for `query`, best first (or in reader order with `reorder`). `mode`
        defaults to `search.mode`."""
        row = self.collection(name)
        self.retriever.validate(query)
        index = self._index(row.id, reconcile=False)
        index.refresh()
        self._reconcile(index, row.id, row.version)
        allowed = None
        if document_ids or sources:
            allowed = self.store.chunk_ids_where(row.id, document_ids, sources)
        search_mode = SearchMode(mode or self.settings.search.mode)
        graph = self.graph(name) if search_mode is SearchMode.GRAPH else None
        return self.retriever.search(
            index, query, k or self.settings.search.default_k, allowed, search_mode, rerank, reorder, graph
        )

    def sentences(self, chunk_ids: list[int]) -> dict[int, SentenceVectors]:
        """The candidate sentences and embeddings ingest stored for those chunks that have
        them (the extractive reader's lookup), from a bounded cache or the database."""
        out: dict[int, SentenceVectors] = {}
        with self._sentences_lock:
            for cid in chunk_ids:
                if (hit := self._sentences.get(cid)) is not None:
                    self._sentences.move_to_end(cid)
                    out[cid] = hit
        missing = [cid for cid in chunk_ids if cid not in out]
        if missing:
            found = self.store.sentences(missing, self.embedder.dimension)
            with self._sentences_lock:
                for cid, data in found.items():
                    self._sentences[cid] = data
                while len(self._sentences) > _SENTENCE_CACHE:
                    self._sentences.popitem(last=False)
            out.update(found)
        return out

    def graph(self, name: str) -> PassageGraph:
        """The collection's passage graph, rebuilt from the database when the collection
        changed (collections ingested before the graph existed get theirs built once)."""
        row = self.collection(name)
        cached = self._graphs.get(row.id)
        if cached is not None and cached[0] == row.version:
            return cached[1]
        with self._graph_lock:
            cached = self._graphs.get(row.id)
            if cached is not None and cached[0] == row.version:
                return cached[1]
            version = self.store.collection_version(row.id)  # read before the rows: never newer
            if needs_backfill(self.store, row.id):
                index = self._index(row.id, reconcile=False)
                with index.write_lock():
                    if needs_backfill(self.store, row.id):
                        backfill(self.store, row.id)
            graph = PassageGraph(load_graph(self.store, row.id), self.settings.search.graph_subject_weight)
            self._graphs[row.id] = (version, graph)
            return graph

    # internals ---------------------------------------------------------------------------
    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            s = self.settings.ingest
            self._chunker = Chunker(self.embedder.token_ids, s.chunk_size, s.chunk_overlap)
        return self._chunker

    def _index_dir(self, collection_id: int) -> Path:
        return self.settings.storage.index_dir / str(collection_id)

    def _index_kind(self, collection_id: int) -> str:
        index = self._indexes.get(collection_id)
        if index is not None:
            return index.dense.kind
        manifest = self._index_dir(collection_id) / "manifest.json"
        if manifest.exists():
            import json

            # unreadable, not JSON, or not an object: "unknown" (opening the index rebuilds it)
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                return "unknown"
            kind = data.get("dense_kind", "flat") if isinstance(data, dict) else None
            return kind if isinstance(kind, str) else "unknown"
        return "flat"

    def _index(self, collection_id: int, reconcile: bool = True) -> CollectionIndex:
        index = self._indexes.get(collection_id)
        if index is None:
            if self._analyzer is None:
                self._analyzer = Analyzer()
            store, dim = self.store, self.embedder.dimension
            index = CollectionIndex(
                self._index_dir(collection_id),
                dim,
                self.settings.index,
                self._analyzer,
                fetch_vectors=lambda ids: store.embeddings(ids, dim),
                fetch_texts=lambda ids: _texts_in_order(store, ids),
            )
            index.refresh()
            self._indexes[collection_id] = index
            if reconcile:
                self._reconcile(index, collection_id)
        return index

    def _reconcile(self, index: CollectionIndex, collection_id: int, version: int | None = None) -> None:
        """Sync the index with the database when the collection's version moved (another
        process or machine wrote to it) or the index files were unreadable. Saved when no
        writer is busy, else kept in memory (the writer's own save includes everything)."""
        if version is None:
            version = self.store.collection_version(collection_id)
        if not index.needs_reconcile and index.db_version == version:
            return
        with index.write_lock(blocking=False) as locked:
            if locked:
                index.refresh()
            self._sync(index, collection_id, locked)

    def _sync(self, index: CollectionIndex, collection_id: int, locked: bool) -> None:
        version = self.store.collection_version(collection_id)  # read before the ids: never newer
        if index.db_version == version and not index.needs_reconcile:
            return
        changed = index.reconcile(self.store.chunk_ids(collection_id))
        index.db_version = version
        if locked and (changed or index.generation == 0 or index.saved_db_version != version):
            index.save()


def _texts_in_order(store: Store, ids: np.ndarray) -> list[str]:
    chunks = store.chunks(ids.tolist())
    return [chunks[int(i)].context_text for i in ids if int(i) in chunks]
