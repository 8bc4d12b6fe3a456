"""Reciprocal rank fusion (Cormack et al. 2009): score(d) = sum over lists of 1 / (k + rank)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def reciprocal_rank_fusion(rankings: Sequence[Iterable[int]], k: int = 60) -> list[tuple[int, float]]:
    """Fuse ranked id lists (best first) into (id, score) pairs, best first; ties broken by id."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            key = int(item)
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
