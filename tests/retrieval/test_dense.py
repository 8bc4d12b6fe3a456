"""FAISS wrapper: exact and IVF search, deletes, filters, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quarry.retrieval.dense import DenseIndex
from quarry.retrieval.errors import IndexCorruptError

DIM = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_search_returns_cosine_best_first() -> None:
    vecs = _vectors(50)
    index = DenseIndex(DIM)
    index.add(np.arange(100, 150), vecs)
    ids, scores = index.search(vecs[7], 5)
    assert ids[0] == 107 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)
    assert index.kind == "flat"


def test_remove_and_filter() -> None:
    vecs = _vectors(30)
    index = DenseIndex(DIM)
    index.add(np.arange(30), vecs)
    assert index.remove(np.array([3, 4, 999])) == 2
    assert len(index) == 28 and 3 not in index.ids()
    ids, _ = index.search(vecs[3], 30)
    assert 3 not in ids and len(ids) == 28
    ids, _ = index.search(vecs[0], 10, allowed=np.array([5, 6, 3]))
    assert sorted(ids.tolist()) == [5, 6]
    ids, _ = index.search(vecs[0], 10, allowed=np.array([], dtype=np.int64))
    assert len(ids) == 0


def test_switches_to_ivf_past_threshold_and_back(tmp_path: Path) -> None:
    vecs = _vectors(3000, seed=1)
    index = DenseIndex(DIM, approximate_threshold=1000, nprobe=8)
    index.add(np.arange(1000), vecs[:1000])
    assert not index.needs_rebuild()
    index.add(np.arange(1000, 3000), vecs[1000:])
    assert index.needs_rebuild()
    index.rebuild(np.arange(3000), vecs)
    assert index.kind == "ivf" and len(index) == 3000
    hits = sum(int(index.search(vecs[i], 1)[0][0] == i) for i in range(0, 3000, 30))
    assert hits >= 95  # a vector finds itself
    # deletes and filters work on IVF too; a tiny allowed set is searched exhaustively
    index.remove(np.arange(0, 100))
    assert 5 not in index.search(vecs[5], 10)[0]
    ids, _ = index.search(vecs[0], 3, allowed=np.array([2999, 1500]))
    assert sorted(ids.tolist()) == [1500, 2999]
    path = tmp_path / "ivf.faiss"
    index.save(path)
    loaded = DenseIndex.load(path, DIM, 1000, 8, trained_size=index.trained_size)
    assert loaded.kind == "ivf" and sorted(loaded.ids().tolist()) == list(range(100, 3000))
    # shrinking far below the threshold goes back to exact search
    loaded.remove(np.arange(100, 2800))
    assert loaded.needs_rebuild()
    loaded.rebuild(np.arange(2800, 3000), vecs[2800:])
    assert loaded.kind == "flat"


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"not an index")
    with pytest.raises(IndexCorruptError):
        DenseIndex.load(bad, DIM, 1000, 8)
    good = tmp_path / "good.faiss"
    DenseIndex(DIM).save(good)
    with pytest.raises(IndexCorruptError, match="dimension"):
        DenseIndex.load(good, DIM * 2, 1000, 8)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 random centres (real embeddings cluster; uniform noise does not)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    v = centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_large_kind_past_large_threshold_round_trips(tmp_path: Path) -> None:
    dim = 32
    vecs = _clustered(6000, dim, seed=2)
    index = DenseIndex(dim, approximate_threshold=1000, nprobe=8, large_threshold=4000, large_nprobe=16)
    index.add(np.arange(3000), vecs[:3000])
    assert index.needs_rebuild()
    index.rebuild(np.arange(3000), vecs[:3000])
    assert index.kind == "ivf"
    index.add(np.arange(3000, 6000), vecs[3000:])
    assert index.needs_rebuild()  # past large_threshold: the full-float IVF no longer fits
    index.rebuild(np.arange(6000), vecs)
    assert index.kind == "ivf-sq8" and len(index) == 6000
    # approximate against exact: recall@10 over 100 queries near the data
    exact = DenseIndex(dim)
    exact.add(np.arange(6000), vecs)
    queries = _clustered(100, dim, seed=3)
    recall = np.mean(
        [len(set(index.search(q, 10)[0].tolist()) & set(exact.search(q, 10)[0].tolist())) / 10 for q in queries]
    )
    assert recall >= 0.95
    path = tmp_path / "sq8.faiss"
    index.save(path)
    loaded = DenseIndex.load(path, dim, 1000, 8, index.trained_size, large_threshold=4000, large_nprobe=16)
    assert loaded.kind == "ivf-sq8" and len(loaded) == 6000
    assert loaded.search(vecs[42], 1)[0][0] == 42
    loaded.remove(np.arange(0, 100))
    assert 42 not in loaded.search(vecs[42], 10)[0] and len(loaded) == 5900
    ids, _ = loaded.search(vecs[0], 3, allowed=np.array([4000, 5999]))
    assert sorted(ids.tolist()) == [4000, 5999]
    # shrinking below half the large threshold goes back to full-float IVF
    loaded.remove(np.arange(100, 4500))
    assert loaded.needs_rebuild()
    loaded.rebuild(np.arange(4500, 6000), vecs[4500:])
    assert loaded.kind == "ivf"
