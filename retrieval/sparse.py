"""BM25 over chunks with bm25s, in immutable segments.

Update strategy (bounded cost, as in log-structured indexes): each ingestion adds a new
segment; a deletion only records a tombstone. Segments live in size tiers (tier = floor of
log base `merge_factor` of the segment's size); when a tier holds `merge_factor` segments
they are merged into one, and a segment whose tombstones pass half of it is rebuilt. So a
chunk is re-indexed O(log N) times over its life, and an update costs O(its own size)
amortised, never a rebuild of the whole collection.

Scores stay comparable across segments: each query term's per-segment score is rescaled
from the segment's IDF to the IDF of the whole collection, so a single segment gives exactly
bm25s's (Lucene) scores and many segments give the same IDF weighting.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from quarry.retrieval.errors import IndexCorruptError

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN)
FetchTexts = Callable[[np.ndarray], list[str]]


class Analyzer:
    """Lower-case word tokens, English stop words removed, Snowball-stemmed."""

    def __init__(self) -> None:
        import Stemmer

        self._stemmer = Stemmer.Stemmer("english")

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
        return list(self._stemmer.stemWords(words))


@dataclass
class Segment:
    name: str
    ids: np.ndarray  # (n,) int64 chunk ids, in bm25s document order
    bm25: Any
    df: dict[str, int]


def _tier(size: int, factor: int) -> int:
    return int(math.log(max(size, 1), factor))


class SparseIndex:
    """Segmented, deletable BM25 index."""

    def __init__(self, analyzer: Analyzer, k1: float = 1.5, b: float = 0.75, merge_factor: int = 8) -> None:
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
        self.merge_factor = merge_factor
        self.segments: list[Segment] = []
        self.tombstones: set[int] = set()

    def __len__(self) -> int:
        return sum(len(s.ids) for s in self.segments) - len(self.tombstones)

    def ids(self) -> np.ndarray:
        if not self.segments:
            return np.zeros(0, dtype=np.int64)
        all_ids = np.concatenate([s.ids for s in self.segments])
        if self.tombstones:
            all_ids = all_ids[~np.isin(all_ids, np.fromiter(self.tombstones, dtype=np.int64))]
        return all_ids

    # updates -------------------------------------------------------------------------
    def add(self, ids: np.ndarray, texts: Sequence[str], fetch_texts: FetchTexts) -> None:
        """Index new chunks as a segment, then merge tiers that have filled up."""
        if len(ids) == 0:
            return
        self.segments.append(self._build(np.asarray(ids, dtype=np.int64), [self.analyzer(t) for t in texts]))
        self._compact(fetch_texts)

    def remove(self, ids: np.ndarray, fetch_texts: FetchTexts) -> None:
        present = set(int(i) for i in self.ids())
        self.tombstones.update(int(i) for i in ids if int(i) in present)
        self._compact(fetch_texts)

    def _build(self, ids: np.ndarray, tokens: list[list[str]]) -> Segment:
        bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        # an empty token list would make bm25s fail; such chunks still keep their slot
        bm25.index([t if t else [""] for t in tokens], show_progress=False)
        df = _document_frequencies(bm25)
        return Segment(name=uuid.uuid4().hex[:16], ids=ids, bm25=bm25, df=df)

    def _compact(self, fetch_texts: FetchTexts) -> None:
        while True:
            dead = self._segment_to_purge() or self._tier_to_merge()
            if not dead:
                return
            keep_ids = np.concatenate([s.ids for s in dead])
            if self.tombstones:
                tomb = np.fromiter(self.tombstones, dtype=np.int64)
                gone = keep_ids[np.isin(keep_ids, tomb)]
                keep_ids = keep_ids[~np.isin(keep_ids, tomb)]
                self.tombstones.difference_update(int(i) for i in gone)
            self.segments = [s for s in self.segments if s not in dead]
            if len(keep_ids):
                texts = fetch_texts(keep_ids)
                if len(texts) != len(keep_ids):
                    raise IndexCorruptError("BM25 merge: the database is missing chunks the index holds")
                self.segments.append(self._build(keep_ids, [self.analyzer(t) for t in texts]))

    def _segment_to_purge(self) -> list[Segment]:
        if not self.tombstones:
            return []
        tomb = np.fromiter(self.tombstones, dtype=np.int64)
        for seg in self.segments:
            if np.isin(seg.ids, tomb).sum() * 2 >= len(seg.ids):
                return [seg]
        return []

    def _tier_to_merge(self) -> list[Segment]:
        tiers: dict[int, list[Segment]] = {}
        for seg in self.segments:
            tiers.setdefault(_tier(len(seg.ids), self.merge_factor), []).append(seg)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= self.merge_factor:
                return tiers[tier]
        return []

    # search ----------------------------------------------------------------------------
    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, BM25 scores > 0) for a query, optionally only among `allowed` ids."""
        terms = list(dict.fromkeys(self.analyzer(query)))
        if not terms or not self.segments or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        total_docs = sum(len(s.ids) for s in self.segments)
        global_df = {t: sum(s.df.get(t, 0) for s in self.segments) for t in terms}
        tomb = np.fromiter(self.tombstones, dtype=np.int64) if self.tombstones else None
        out_ids: list[np.ndarray] = []
        out_scores: list[np.ndarray] = []
        for seg in self.segments:
            present = [t for t in terms if seg.df.get(t)]
            if not present:
                continue
            n_seg = len(seg.ids)
            scores = np.zeros(n_seg, dtype=np.float32)
            for term in present:
                local = _idf(n_seg, seg.df[term])
                scale = _idf(total_docs, global_df[term]) / local if local > 0 else 0.0
                scores += scale * seg.bm25.get_scores([term])
            mask = scores > 0
            if tomb is not None:
                mask &= ~np.isin(seg.ids, tomb)
            if allowed is not None:
                mask &= np.isin(seg.ids, allowed)
            idx = np.flatnonzero(mask)
            if len(idx) > k:
                idx = idx[np.argpartition(-scores[idx], k - 1)[:k]]
            out_ids.append(seg.ids[idx])
            out_scores.append(scores[idx])
        if not out_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        ids = np.concatenate(out_ids)
        scores = np.concatenate(out_scores)
        order = np.lexsort((ids, -scores))[:k]
        return ids[order], scores[order]

    # persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        """Write segments not yet on disk (segments are immutable); returns their names."""
        directory.mkdir(parents=True, exist_ok=True)
        for seg in self.segments:
            final = directory / seg.name
            if final.exists():
                continue
            tmp = directory / f".{seg.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            seg.bm25.save(str(tmp), show_progress=False)
            np.save(tmp / "ids.npy", seg.ids)
            (tmp / "df.json").write_text(json.dumps(seg.df))
            tmp.rename(final)
        return [s.name for s in self.segments]

    def load_segments(self, directory: Path, names: Sequence[str], tombstones: Sequence[int]) -> None:
        segments = []
        for name in names:
            path = directory / name
            try:
                bm25 = bm25s.BM25.load(str(path), show_progress=False)
                ids = np.load(path / "ids.npy")
                df = json.loads((path / "df.json").read_text())
            except (OSError, ValueError, KeyError) as exc:
                raise IndexCorruptError(f"cannot read BM25 segment {name}: {exc}") from exc
            segments.append(Segment(name=name, ids=ids.astype(np.int64), bm25=bm25, df=df))
        self.segments = segments
        self.tombstones = set(int(i) for i in tombstones)


def _idf(n_docs: int, df: int) -> float:
    """Lucene's BM25 IDF, as bm25s computes it."""
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def _document_frequencies(bm25: Any) -> dict[str, int]:
    """Per-term document counts, read off bm25s's CSC score matrix (one column per term)."""
    indptr = np.asarray(bm25.scores["indptr"])
    counts = np.diff(indptr)
    return {term: int(counts[tid]) for term, tid in bm25.vocab_dict.items() if term and counts[tid]}
