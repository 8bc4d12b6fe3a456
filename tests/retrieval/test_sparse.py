"""Segmented BM25: exact agreement with one bm25s index, bounded merging, deletes."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from quarry.retrieval.sparse import Analyzer, SparseIndex

WORDS = (
    "apple", "banana", "cherry", "delta", "echo", "falcon",
    "grape", "harbor", "island", "jungle", "kettle", "lemon",
)  # fmt: skip


def _corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 15))) for _ in range(n)]


class _Texts:
    """Texts by id, as the database would return them."""

    def __init__(self) -> None:
        self.by_id: dict[int, str] = {}
        self.calls = 0

    def __call__(self, ids: np.ndarray) -> list[str]:
        self.calls += 1
        return [self.by_id[int(i)] for i in ids]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


def test_analyzer_stems_and_drops_stopwords(analyzer: Analyzer) -> None:
    assert analyzer("The Runners were RUNNING to the harbors!") == ["runner", "were", "run", "harbor"]


def test_one_segment_matches_bm25s_exactly(analyzer: Analyzer) -> None:
    texts = _corpus(200)
    store = _Texts()
    store.by_id = dict(enumerate(texts))
    index = SparseIndex(analyzer, merge_factor=64)
    index.add(np.arange(200), texts, store)
    reference = bm25s.BM25()
    reference.index([analyzer(t) for t in texts], show_progress=False)
    query = "banana falcon lemon"
    expected = reference.get_scores(analyzer(query))
    ids, scores = index.search(query, 10)
    np.testing.assert_allclose(scores, expected[ids], rtol=1e-5)
    assert set(ids.tolist()) == set(np.argsort(-expected)[:10].tolist()) or np.isclose(
        np.sort(expected)[-10], np.sort(expected)[-11]
    )


def test_many_segments_use_collection_wide_idf(analyzer: Analyzer) -> None:
    """With b=0 (no length normalisation) segment scores rescaled to global IDF equal a
    single index over everything."""
    texts = _corpus(300, seed=3)
    store = _Texts()
    store.by_id = dict(enumerate(texts))
    index = SparseIndex(analyzer, b=0.0, merge_factor=64)
    for start in range(0, 300, 50):
        index.add(np.arange(start, start + 50), texts[start : start + 50], store)
    assert len(index.segments) == 6
    reference = bm25s.BM25(b=0.0)
    reference.index([analyzer(t) for t in texts], show_progress=False)
    query = "cherry harbor island"
    expected = reference.get_scores(analyzer(query))
    ids, scores = index.search(query, 300)
    np.testing.assert_allclose(scores, expected[ids], rtol=1e-4)
    assert len(ids) == int((expected > 0).sum())


def test_tiered_merging_bounds_segments_and_work(analyzer: Analyzer) -> None:
    store = _Texts()
    index = SparseIndex(analyzer, merge_factor=4)
    for next_id in range(64):  # 64 single-document ingests
        store.by_id[next_id] = _corpus(1, seed=next_id)[0]
        index.add(np.array([next_id]), [store.by_id[next_id]], store)
        per_tier: dict[int, int] = {}
        for seg in index.segments:
            tier = int(np.log(len(seg.ids)) / np.log(4) + 1e-9)
            per_tier[tier] = per_tier.get(tier, 0) + 1
        assert all(count < 4 for count in per_tier.values())
    assert len(index) == 64 and sorted(index.ids().tolist()) == list(range(64))
    # every document was re-indexed at most log_4(64) = 3 times: the merge calls fetched
    # 16 groups of 4, 4 of 16 and 1 of 64
    assert store.calls == 16 + 4 + 1


def test_deletes_are_hidden_then_purged(analyzer: Analyzer) -> None:
    store = _Texts()
    texts = ["unique zebra text"] + _corpus(9, seed=5)
    store.by_id = dict(enumerate(texts))
    index = SparseIndex(analyzer, merge_factor=8)
    index.add(np.arange(10), texts, store)
    assert index.search("zebra", 5)[0].tolist() == [0]
    index.remove(np.array([0]), store)
    assert index.search("zebra", 5)[0].tolist() == []
    assert 0 in index.tombstones and len(index) == 9
    index.remove(np.arange(1, 6), store)  # more than half the segment: rebuilt without them
    assert not index.tombstones and sorted(index.ids().tolist()) == [6, 7, 8, 9]
    assert len(index.segments) == 1 and len(index.segments[0].ids) == 4


def test_filter_and_unknown_terms(analyzer: Analyzer) -> None:
    store = _Texts()
    texts = ["apple pie", "apple tart", "banana split"]
    store.by_id = dict(enumerate(texts))
    index = SparseIndex(analyzer)
    index.add(np.arange(3), texts, store)
    assert index.search("apple", 5, allowed=np.array([1, 2]))[0].tolist() == [1]
    assert index.search("quasar nebula", 5)[0].tolist() == []
    assert index.search("the of and", 5)[0].tolist() == []


def test_save_and_load(tmp_path: Path, analyzer: Analyzer) -> None:
    store = _Texts()
    texts = _corpus(40, seed=9)
    store.by_id = dict(enumerate(texts))
    index = SparseIndex(analyzer)
    index.add(np.arange(20), texts[:20], store)
    index.add(np.arange(20, 40), texts[20:], store)
    index.remove(np.array([3]), store)
    names = index.save(tmp_path)
    loaded = SparseIndex(analyzer)
    loaded.load_segments(tmp_path, names, sorted(index.tombstones))
    for query in ("apple kettle", "grape"):
        a, sa = index.search(query, 10)
        b, sb = loaded.search(query, 10)
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb)
