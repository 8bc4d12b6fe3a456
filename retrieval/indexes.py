"""A collection's dense and sparse indexes on disk, kept consistent with the database.

Layout of `<index_dir>/<collection id>/`:
    manifest.json         the current generation: FAISS file, BM25 segments, tombstones
    dense-<gen>.faiss     FAISS index of that generation
    tombstones-<gen>.npy  deleted chunk ids still inside BM25 segments
    bm25/<segment>/       immutable bm25s segments
    .lock                 writers hold an exclusive lock on it

A save writes the new generation's files, then replaces the manifest atomically (temp file +
rename); a reader therefore always sees one whole generation. The database is the source
of truth: `reconcile` adds what the database has and the index lacks (a crash after a
commit and before a save) and removes what the database no longer has.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from quarry.core.settings import IndexSettings
from quarry.retrieval.dense import DenseIndex
from quarry.retrieval.errors import IndexCorruptError
from quarry.retrieval.sparse import Analyzer, SparseIndex

log = logging.getLogger("quarry.retrieval")
FetchVectors = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
FetchTexts = Callable[[np.ndarray], list[str]]


class CollectionIndex:
    """FAISS + BM25 for one collection."""

    def __init__(
        self,
        directory: Path,
        dimension: int,
        settings: IndexSettings,
        analyzer: Analyzer,
        fetch_vectors: FetchVectors,
        fetch_texts: FetchTexts,
    ) -> None:
        self.directory = directory
        self.dimension = dimension
        self.settings = settings
        self.fetch_vectors = fetch_vectors
        self.fetch_texts = fetch_texts
        self._analyzer = analyzer
        self.dense = self._empty_dense()
        self.sparse = self._empty_sparse()
        self.generation = 0
        self._manifest_stamp: tuple[int, int] | None = None
        self._previous_segments: list[str] = []
        self.needs_reconcile = False
        self.db_version = -1  # the database version these indexes reflect (-1: unknown)
        self.saved_db_version = -1
        directory.mkdir(parents=True, exist_ok=True)

    def _empty_dense(self) -> DenseIndex:
        s = self.settings
        return DenseIndex(self.dimension, s.approximate_threshold, s.ivf_nprobe, s.large_threshold, s.large_nprobe)

    def _empty_sparse(self) -> SparseIndex:
        s = self.settings
        return SparseIndex(self._analyzer, k1=s.bm25_k1, b=s.bm25_b, merge_factor=s.bm25_merge_factor)

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    # locking -------------------------------------------------------------------------
    @contextmanager
    def write_lock(self, blocking: bool = True) -> Iterator[bool]:
        """Exclusive writer lock across processes; yields False when not blocking and busy."""
        with open(self.directory / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # loading ---------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load the newest generation on disk if it changed since the last load."""
        try:
            st = self.manifest_path.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._manifest_stamp:
            return False
        problem: Exception | None = None
        for _ in range(3):  # a concurrent save may remove the files we were about to read
            try:
                self._load_manifest()
                self._manifest_stamp = stamp
                return True
            except (FileNotFoundError, IndexCorruptError) as exc:
                problem = exc
        # unreadable files: start empty and let the owner rebuild from the database
        log.warning("index files in %s cannot be read (%s); rebuilding them from the database", self.directory, problem)
        self.dense, self.sparse, self.generation = self._empty_dense(), self._empty_sparse(), 0
        self._manifest_stamp = stamp
        self.needs_reconcile = True
        self.db_version = -1
        return True

    def _load_manifest(self) -> None:
        """Load the generation the manifest names. A missing file raises FileNotFoundError (a
        concurrent save may have just replaced it); any other unreadable file, whatever the
        library reading it raises, becomes IndexCorruptError, so the caller rebuilds from the
        database rather than failing every search."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
            gen = int(manifest["generation"])
            dense = DenseIndex.load(
                self.directory / manifest["dense"],
                self.dimension,
                self.settings.approximate_threshold,
                self.settings.ivf_nprobe,
                int(manifest.get("trained_size", 0)),
                self.settings.large_threshold,
                self.settings.large_nprobe,
            )
            sparse = self._empty_sparse()
            tombstones = _load_ids(self.directory / manifest["tombstones"])
            segments = [str(name) for name in manifest["segments"]]
            sparse.load_segments(self.directory / "bm25", segments, tombstones.tolist())
            db_version = int(manifest.get("db_version", -1))
        except (FileNotFoundError, IndexCorruptError):
            raise
        except Exception as exc:  # whatever numpy, faiss, bm25s or pickle raise on a damaged file
            raise IndexCorruptError(f"unreadable index files in {self.directory}: {exc!r}") from exc
        self.dense, self.sparse, self.generation = dense, sparse, gen
        self._previous_segments = segments
        self.db_version = self.saved_db_version = db_version

    # updates ---------------------------------------------------------------------------
    def apply(self, added_ids: np.ndarray, vectors: np.ndarray, texts: list[str], removed_ids: np.ndarray) -> None:
        """Remove then add chunks in memory; `save` makes it durable."""
        if len(removed_ids):
            self.dense.remove(removed_ids)
            self.sparse.remove(removed_ids, self.fetch_texts)
        if len(added_ids):
            self.dense.add(added_ids, vectors)
            self.sparse.add(added_ids, texts, self.fetch_texts)
        if self.dense.needs_rebuild():
            self._rebuild_dense()

    def _rebuild_dense(self) -> None:
        ids, vectors = self.fetch_vectors(self.dense.ids())
        self.dense = self._empty_dense()
        self.dense.rebuild(ids, vectors)

    def reconcile(self, truth: np.ndarray) -> bool:
        """Make both indexes hold exactly the chunk ids in `truth`; True if anything changed."""
        changed = False
        truth = np.asarray(truth, dtype=np.int64)
        for part in ("dense", "sparse"):
            have = getattr(self, part).ids()
            missing = np.setdiff1d(truth, have)
            extra = np.setdiff1d(have, truth)
            if len(extra):
                if part == "dense":
                    self.dense.remove(extra)
                else:
                    self.sparse.remove(extra, self.fetch_texts)
                changed = True
            if len(missing):
                if part == "dense":
                    ids, vectors = self.fetch_vectors(missing)
                    self.dense.add(ids, vectors)
                else:
                    self.sparse.add(missing, self.fetch_texts(missing), self.fetch_texts)
                changed = True
        if self.dense.needs_rebuild():
            self._rebuild_dense()
            changed = True
        self.needs_reconcile = False
        return changed

    def save(self) -> None:
        """Write a new generation and switch the manifest to it atomically."""
        gen = self.generation + 1
        dense_name = f"dense-{gen}.faiss"
        tomb_name = f"tombstones-{gen}.npy"
        tmp = self.directory / f".{dense_name}.tmp"
        self.dense.save(tmp)
        _fsync_file(tmp)
        os.replace(tmp, self.directory / dense_name)
        tomb_tmp = self.directory / f".{tomb_name}.tmp.npy"
        np.save(tomb_tmp, np.fromiter(self.sparse.tombstones, dtype=np.int64))
        os.replace(tomb_tmp, self.directory / tomb_name)
        segments = self.sparse.save(self.directory / "bm25")
        manifest = {
            "generation": gen,
            "dense": dense_name,
            "dense_kind": self.dense.kind,
            "trained_size": self.dense.trained_size,
            "tombstones": tomb_name,
            "segments": segments,
            "chunks": len(self.dense),
            "db_version": self.db_version,
        }
        mtmp = self.directory / ".manifest.json.tmp"
        mtmp.write_text(json.dumps(manifest, indent=1))
        _fsync_file(mtmp)
        os.replace(mtmp, self.manifest_path)
        self.generation = gen
        self.saved_db_version = self.db_version
        st = self.manifest_path.stat()
        self._manifest_stamp = (st.st_mtime_ns, st.st_size)
        self._collect_garbage(
            keep={dense_name, tomb_name, f"dense-{gen - 1}.faiss", f"tombstones-{gen - 1}.npy"}, segments=set(segments)
        )

    def _collect_garbage(self, keep: set[str], segments: set[str]) -> None:
        """Remove files of generations older than the previous one (readers may still be
        loading the previous one) and BM25 segments no manifest names any more."""
        for path in self.directory.iterdir():
            stale_tmp = path.name.startswith(".") and ".tmp" in path.name and path.is_file()
            if stale_tmp or (path.name.startswith(("dense-", "tombstones-")) and path.name not in keep):
                path.unlink(missing_ok=True)  # writers hold the lock: any temp file is left from a crash
        bm25_dir = self.directory / "bm25"
        if bm25_dir.exists():
            previous = set(self._previous_segments)
            for path in bm25_dir.iterdir():
                if path.name not in segments and path.name not in previous:
                    shutil.rmtree(path, ignore_errors=True)
        self._previous_segments = sorted(segments)

    def search_dense(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.dense.search(vector, k, allowed)

    def search_sparse(self, query: str, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.sparse.search(query, k, allowed)


def _load_ids(path: Path) -> np.ndarray:
    """A saved int64 id array (never pickles); IndexCorruptError when it is not one."""
    ids = np.load(path, allow_pickle=False)
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise IndexCorruptError(f"{path.name} is not a list of chunk ids")
    return ids.astype(np.int64)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
