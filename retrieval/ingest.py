"""Ingestion: load → chunk → embed (batched) → one transaction per batch → indexes.

A batch's documents and chunks are committed together, then applied to the indexes; the
indexes are saved when the run ends. A crash at any point leaves each document either as
it was or complete: uncommitted work is lost, committed work reaches the indexes through
`CollectionIndex.reconcile` the next time the collection is opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quarry.core.settings import IngestSettings
from quarry.core.types import Chunk, DocumentFailure, DocumentStatus, IngestReport, SourceDocument
from quarry.retrieval.chunking import Chunker
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.errors import DocumentError, UnsupportedTypeError
from quarry.retrieval.indexes import CollectionIndex
from quarry.retrieval.loaders import load_file, media_type_for
from quarry.retrieval.sentence_store import embed_sentences
from quarry.retrieval.storage import PreparedDocument, Store


@dataclass(frozen=True)
class FileItem:
    path: Path
    source: str


IngestItem = FileItem | SourceDocument


@dataclass(frozen=True)
class Progress:
    """Reported after each input item and each committed batch."""

    items_done: int
    chunks_done: int
    source: str


ProgressCallback = Callable[[Progress], None]


class Ingestor:
    """Runs one ingestion into one collection."""

    def __init__(
        self,
        store: Store,
        embedder: SentenceEmbedder,
        chunker: Chunker,
        settings: IngestSettings,
        track_status: bool = False,
        skip_unsupported: bool = False,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.settings = settings
        self.track_status = track_status  # write parsing/chunking/embedding states (API jobs)
        self.skip_unsupported = skip_unsupported  # unsupported files are reported as skipped, not failed

    def run(
        self,
        collection: str,
        collection_id: int,
        index: CollectionIndex,
        items: Iterable[IngestItem],
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(collection=collection)
        known = self.store.document_hashes(collection_id)
        pending: list[tuple[SourceDocument, list[Chunk]]] = []
        pending_chunks = 0
        items_done = 0

        def flush() -> None:
            nonlocal pending, pending_chunks
            if pending:
                self._commit(collection_id, index, pending, report)
                pending, pending_chunks = [], 0

        for item in items:
            label = item.source
            self._mark(collection_id, [label], DocumentStatus.PARSING)
            for doc in self._documents(item, collection_id, report):
                previous = known.get(doc.source)
                if previous == (doc.content_hash, "indexed"):
                    report.unchanged.append(doc.source)
                    continue
                self._mark(collection_id, [doc.source], DocumentStatus.CHUNKING)
                try:
                    chunks = self.chunker.split(doc)
                except Exception as exc:  # a parser bug must cost one document, not the run
                    self._fail(collection_id, doc.source, doc.media_type, f"{doc.source}: cannot chunk ({exc})", report)
                    continue
                if not chunks:
                    self._fail(collection_id, doc.source, doc.media_type, f"{doc.source}: no text to index", report)
                    continue
                known[doc.source] = (doc.content_hash, "indexed")
                pending.append((doc, chunks))
                pending_chunks += len(chunks)
                if pending_chunks >= self.settings.batch_chunks:
                    flush()
            items_done += 1
            if on_progress:
                on_progress(Progress(items_done, report.chunks, label))
        flush()
        self.store.clear_errors(collection_id, report.unchanged)
        if report.added or report.replaced:
            index.save()
        report.seconds = time.perf_counter() - started
        if on_progress:
            on_progress(Progress(items_done, report.chunks, ""))
        return report

    def _documents(self, item: IngestItem, collection_id: int, report: IngestReport) -> Iterator[SourceDocument]:
        if isinstance(item, SourceDocument):
            yield item
            return
        try:
            media_type = media_type_for(item.source)
            loaded = list(load_file(item.path, item.source, self.settings))
        except DocumentError as exc:
            if self.skip_unsupported and isinstance(exc, UnsupportedTypeError):
                report.skipped.append(DocumentFailure(source=item.source, error=str(exc)))
            else:
                self._fail(collection_id, item.source, _guess_media_type(item.source), str(exc), report)
            return
        except Exception as exc:  # any parser failure is this document's error
            message = f"{item.source}: cannot read ({type(exc).__name__}: {exc})"
            self._fail(collection_id, item.source, _guess_media_type(item.source), message, report)
            return
        for entry in loaded:
            if isinstance(entry, DocumentError):
                self._fail(collection_id, entry.source or item.source, media_type, str(entry), report)
            else:
                yield entry

    def _mark(self, collection_id: int, sources: list[str], status: DocumentStatus) -> None:
        if self.track_status:
            self.store.set_status_where_pending(collection_id, sources, status)

    def _fail(self, collection_id: int, source: str, media_type: str, error: str, report: IngestReport) -> None:
        report.failed.append(DocumentFailure(source=source, error=error))
        self.store.record_failure(collection_id, source, media_type, error)

    def _commit(
        self,
        collection_id: int,
        index: CollectionIndex,
        batch: list[tuple[SourceDocument, list[Chunk]]],
        report: IngestReport,
    ) -> None:
        self._mark(collection_id, [doc.source for doc, _ in batch], DocumentStatus.EMBEDDING)
        texts = [c.context_text for _, chunks in batch for c in chunks]
        vectors = self.embedder.encode(texts)
        sentences = (
            embed_sentences(self.embedder.encode, [c.text for _, chunks in batch for c in chunks])
            if self.settings.sentence_vectors
            else None
        )
        prepared: list[PreparedDocument] = []
        offset = 0
        for doc, chunks in batch:
            end = offset + len(chunks)
            prepared.append(PreparedDocument(doc, chunks, vectors[offset:end], sentences and sentences[offset:end]))
            offset = end
        results = self.store.write_documents(collection_id, prepared)
        removed = {cid for r in results for cid in r.removed_chunk_ids}
        added = [cid for r in results for cid in r.chunk_ids]
        keep = np.array([cid not in removed for cid in added], dtype=bool)
        added_ids = np.asarray(added, dtype=np.int64)[keep]
        if results and index.db_version == results[0].version - 1:
            index.db_version = results[0].version  # nobody else wrote in between
        index.apply(
            added_ids,
            vectors[keep],
            [t for t, k in zip(texts, keep, strict=True) if k],
            np.asarray(sorted(removed), dtype=np.int64),
        )
        for (doc, _), result in zip(batch, results, strict=True):
            (report.replaced if result.replaced else report.added).append(doc.source)
        report.chunks += int(len(added_ids))


def _guess_media_type(source: str) -> str:
    try:
        return media_type_for(source)
    except DocumentError:
        return "application/octet-stream"
