"""Fusing the dense and BM25 candidate lists of a hybrid search into one ranking.

- Convex combination of normalised scores (Bruch et al. 2023, "An Analysis of Fusion
  Functions for Hybrid Retrieval"): score(d) = sum over lists of w · norm(score), where an
  id a list did not return gets that list's lowest normalised score. The default.
- Reciprocal rank fusion (Cormack et al. 2009): score(d) = sum over lists of w / (k + rank).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from quarry.core.settings import SearchSettings

Normalisation = Literal["minmax", "zscore"]
ScoredList = tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]  # (ids, scores), best first


def _ordered(scores: dict[int, float]) -> list[tuple[int, float]]:
    """Best first; ties broken by the smaller id, so the order never depends on input order."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def reciprocal_rank_fusion(
    rankings: Sequence[Iterable[int]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse ranked id lists (best first) into (id, score) pairs, best first; ties broken by id.
    `weights` (one per list, default 1) scale each list's 1 / (k + rank)."""
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else float(weights[i])
        for rank, item in enumerate(ranking, start=1):
            key = int(item)
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
    return _ordered(scores)


def normalise(scores: Sequence[float] | np.ndarray, how: Normalisation = "minmax") -> np.ndarray:
    """One list's scores on a common scale: `minmax` maps the best to 1 and the worst to 0;
    `zscore` gives standard deviations from the list's mean. A list whose scores are all
    equal (one candidate, say) maps to 1: every candidate in it is its best."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    hi, lo = float(s.max()), float(s.min())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.ones_like(s)
    if how == "minmax":
        return (s - lo) / (hi - lo)
    if how == "zscore":
        return (s - s.mean()) / s.std()
    raise ValueError(f"unknown normalisation {how!r}")


def convex_fusion(
    lists: Sequence[ScoredList], weights: Sequence[float], normalisation: Normalisation = "minmax"
) -> list[tuple[int, float]]:
    """Fuse scored lists into (id, score) pairs, best first, ties broken by id: the weighted sum
    of each list's normalised scores. An id a list lacks gets that list's lowest normalised
    score (0 under minmax; 0 too when the list's scores are all equal), since it ranked no
    better than anything the list returned; an empty list adds nothing."""
    if len(weights) != len(lists):
        raise ValueError("one weight per list")
    normed: list[tuple[dict[int, float], float, float]] = []
    for (ids, scores), w in zip(lists, weights, strict=True):
        keys = [int(i) for i in np.asarray(ids).tolist()]
        values = normalise(scores, normalisation)
        if len(keys) != values.size:
            raise ValueError("ids and scores differ in length")
        if not keys:
            continue
        floor = float(values.min()) if float(values.max()) > float(values.min()) else 0.0
        normed.append((dict(zip(keys, values.tolist(), strict=True)), floor, float(w)))
    every = {key for own, _, _ in normed for key in own}
    return _ordered({key: sum(w * own.get(key, floor) for own, floor, w in normed) for key in every})


def fuse_hybrid(dense: ScoredList, sparse: ScoredList, settings: SearchSettings) -> tuple[list[tuple[int, float]], str]:
    """Hybrid search's fusion of its dense and BM25 candidates, as `search.fusion` says:
    ((id, score) best first, the score kind: `fused` or `rrf`). The dense list weighs
    `search.fusion_dense_weight`, BM25 the rest."""
    alpha = settings.fusion_dense_weight
    if settings.fusion == "rrf":
        # weights 2α and 2(1 − α): the default α = 0.5 gives plain RRF's scores
        ranked = reciprocal_rank_fusion([dense[0], sparse[0]], settings.rrf_k, [2 * alpha, 2 * (1 - alpha)])
        return ranked, "rrf"
    return convex_fusion([dense, sparse], [alpha, 1 - alpha], settings.fusion_normalisation), "fused"
