"""Fusion of the dense and BM25 lists: the math on hand-made score lists, and hybrid search
through a real Library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quarry.core.settings import SearchSettings
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.fusion import convex_fusion, fuse_hybrid, normalise, reciprocal_rank_fusion
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from tests.conftest import make_settings


def _approx(pairs: list[tuple[int, float]]) -> list[tuple[int, object]]:
    return [(i, pytest.approx(s)) for i, s in pairs]


# normalisation -------------------------------------------------------------------------------
def test_minmax_maps_best_to_one_and_worst_to_zero() -> None:
    assert normalise([9.0, 5.0, 1.0], "minmax").tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert normalise([0.8, 0.6, 0.7], "minmax").tolist() == pytest.approx([1.0, 0.0, 0.5])


def test_zscore_centres_and_scales() -> None:
    z = normalise([4.0, 2.0, 0.0], "zscore")
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    assert z.tolist() == pytest.approx([np.sqrt(1.5), 0.0, -np.sqrt(1.5)])


def test_equal_scores_single_candidates_and_empty_lists() -> None:
    for how in ("minmax", "zscore"):
        assert normalise([3.0, 3.0], how).tolist() == [1.0, 1.0]
        assert normalise([0.2], how).tolist() == [1.0]
        assert normalise([], how).size == 0
    with pytest.raises(ValueError):
        normalise([1.0, 2.0], "rank")  # type: ignore[arg-type]


# convex combination --------------------------------------------------------------------------
def test_convex_fusion_is_the_weighted_sum_of_normalised_scores() -> None:
    dense = ([1, 2, 3], [0.9, 0.7, 0.5])  # minmax: 1, 0.5, 0
    sparse = ([3, 2, 1], [12.0, 4.0, 2.0])  # minmax: 1, 0.2, 0
    assert convex_fusion([dense, sparse], [0.5, 0.5]) == _approx([(1, 0.5), (3, 0.5), (2, 0.35)])
    # the weights move the balance: dense-heavy puts the dense winner first, BM25-heavy the BM25 one
    assert convex_fusion([dense, sparse], [0.8, 0.2]) == _approx([(1, 0.8), (2, 0.44), (3, 0.2)])
    assert convex_fusion([dense, sparse], [0.2, 0.8]) == _approx([(3, 0.8), (2, 0.26), (1, 0.2)])


def test_convex_fusion_uses_scores_not_just_ranks() -> None:
    # dense barely prefers 8 to 7; BM25 prefers 7 by a mile: the margins decide, not the ranks
    dense = ([8, 9, 7, 10], [0.70, 0.695, 0.69, 0.10])
    sparse = ([7, 8, 9, 10], [30.0, 2.0, 1.5, 1.0])
    assert [i for i, _ in convex_fusion([dense, sparse], [0.5, 0.5])] == [7, 8, 9, 10]
    assert [i for i, _ in reciprocal_rank_fusion([dense[0], sparse[0]])][0] == 8


def test_an_id_missing_from_a_list_gets_that_lists_lowest_score() -> None:
    dense = ([1, 2], [0.9, 0.5])
    sparse = ([3, 1, 4], [10.0, 6.0, 2.0])  # minmax: 1, 0.5, 0
    fused = dict(convex_fusion([dense, sparse], [0.5, 0.5]))
    assert fused == pytest.approx({1: 0.75, 2: 0.0, 3: 0.5, 4: 0.0})
    z = dict(convex_fusion([dense, sparse], [0.5, 0.5], "zscore"))
    dz, sz = normalise([0.9, 0.5], "zscore"), normalise([10.0, 6.0, 2.0], "zscore")
    assert z[2] == pytest.approx(0.5 * dz[1] + 0.5 * sz.min())  # not in BM25: BM25's floor
    assert z[3] == pytest.approx(0.5 * dz.min() + 0.5 * sz[0])  # not in dense: dense's floor


def test_a_list_of_equal_scores_lifts_its_ids_above_the_missing_ones() -> None:
    dense = ([1, 2, 3], [0.9, 0.8, 0.7])
    sparse = ([3], [4.2])  # the only chunk with a query word
    fused = convex_fusion([dense, sparse], [0.5, 0.5])
    assert fused == _approx([(1, 0.5), (3, 0.5), (2, 0.25)])  # 3 climbs from last to a tie with 1


def test_empty_lists_add_nothing() -> None:
    dense = ([5, 6], [0.8, 0.4])
    empty: tuple[list[int], list[float]] = ([], [])
    assert convex_fusion([dense, empty], [0.5, 0.5]) == _approx([(5, 0.5), (6, 0.0)])
    assert convex_fusion([empty, empty], [0.5, 0.5]) == []
    assert convex_fusion([(np.zeros(0, np.int64), np.zeros(0, np.float32)), dense], [0.3, 0.7])[0][0] == 5


def test_ties_are_broken_by_the_smaller_id_whatever_the_input_order() -> None:
    a = ([9, 4], [0.6, 0.2])
    b = ([4, 9], [5.0, 1.0])
    for lists in ([a, b], [b, a]):
        assert convex_fusion(lists, [0.5, 0.5]) == _approx([(4, 0.5), (9, 0.5)])
    assert reciprocal_rank_fusion([[9, 4], [4, 9]]) == reciprocal_rank_fusion([[4, 9], [9, 4]])
    assert [i for i, _ in reciprocal_rank_fusion([[9, 4], [4, 9]])] == [4, 9]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        convex_fusion([([1], [0.5])], [0.5, 0.5])
    with pytest.raises(ValueError):
        convex_fusion([([1, 2], [0.5])], [1.0])
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])


# reciprocal rank fusion ----------------------------------------------------------------------
def test_rrf_scores_and_weights() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2], [2, 3]], k=60))
    assert fused == pytest.approx({1: 1 / 61, 2: 1 / 62 + 1 / 61, 3: 1 / 62})
    weighted = dict(reciprocal_rank_fusion([[1, 2], [2, 3]], k=60, weights=[1.5, 0.5]))
    assert weighted == pytest.approx({1: 1.5 / 61, 2: 1.5 / 62 + 0.5 / 61, 3: 0.5 / 62})


def test_fuse_hybrid_follows_the_settings() -> None:
    dense = (np.array([1, 2, 3]), np.array([0.9, 0.7, 0.5], np.float32))
    sparse = (np.array([3, 4]), np.array([8.0, 1.0], np.float32))
    ranked, kind = fuse_hybrid(dense, sparse, SearchSettings())
    assert kind == "fused" and ranked == convex_fusion([dense, sparse], [0.5, 0.5], "minmax")
    ranked, kind = fuse_hybrid(dense, sparse, SearchSettings(fusion="rrf"))
    assert kind == "rrf" and ranked == reciprocal_rank_fusion([dense[0], sparse[0]], 60)  # the old scores exactly
    ranked, _ = fuse_hybrid(dense, sparse, SearchSettings(fusion_normalisation="zscore", fusion_dense_weight=0.7))
    assert ranked == _approx(convex_fusion([dense, sparse], [0.7, 0.3], "zscore"))
    assert [i for i, _ in fuse_hybrid(dense, sparse, SearchSettings(fusion_dense_weight=1.0))[0][:3]] == [1, 2, 3]
    assert fuse_hybrid(dense, sparse, SearchSettings(fusion_dense_weight=0.0))[0][0][0] == 3


def test_fusion_settings_are_bounded() -> None:
    for bad in ({"fusion": "combsum"}, {"fusion_normalisation": "max"}, {"fusion_dense_weight": 1.5}):
        with pytest.raises(ValueError):
            SearchSettings(**bad)


# through the Library -------------------------------------------------------------------------
DOCS = {
    "whales.md": "The blue whale is the largest animal ever known to have lived on Earth.",
    "tea.txt": "Green tea is made from the leaves of Camellia sinensis that have not been oxidised.",
    "rivers.md": "The Danube flows through ten countries before reaching the Black Sea.",
    "code.txt": "Error E4127 means the flux capacitor lost its calibration table.",
}


def _library(tmp_path: Path, embedder: SentenceEmbedder, **search: object) -> Library:
    lib = Library(make_settings(tmp_path, search=search), embedder=embedder)
    lib.ingest_documents("kb", [text_document(t, name=n) for n, t in DOCS.items()])
    return lib


def test_hybrid_search_returns_fused_hits(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    lib = _library(tmp_path, embedder)
    try:
        for query, source in {
            "largest animal on the planet": "whales.md",  # paraphrase: dense finds it
            "what does E4127 mean": "code.txt",  # a rare code: BM25 finds it
            "Camellia sinensis leaves": "tea.txt",
        }.items():
            hits = lib.search("kb", query, k=4)
            assert hits[0].document == source, (query, hits[0])
            assert all(h.score_kind == "fused" for h in hits)
            assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            assert all(0.0 <= h.score <= 1.0 for h in hits)  # minmax, weights summing to 1
            assert hits[0].dense_score is not None
        assert lib.search("kb", "what does E4127 mean", k=1)[0].sparse_score is not None
        first, again = (lib.search("kb", "largest animal on the planet", k=4) for _ in range(2))
        assert [h.chunk_id for h in first] == [h.chunk_id for h in again]
    finally:
        lib.close()


def test_rrf_stays_available_as_a_setting(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    lib = _library(tmp_path, embedder, fusion="rrf")
    try:
        hits = lib.search("kb", "largest animal on the planet", k=3)
        assert hits[0].document == "whales.md" and {h.score_kind for h in hits} == {"rrf"}
        assert hits[0].score <= 2 / 61
    finally:
        lib.close()
