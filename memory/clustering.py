"""Offline half of Squeezed Attention (Hooper et al. 2024): K-means over a fixed context's
keys per layer and KV head, and the global thresholds calibrated on the context's last
queries.

Clustering runs on normalised keys (spherical K-means with faiss, so keys that point the
same way share a cluster whatever their norm); the centroid that queries are scored
against is the mean of the cluster's original keys, so q·c_j is the mean logit of the
cluster. With the hierarchical lookup the fine centroids are clustered again (weighted by
cluster size) into coarse clusters.

Calibration picks one threshold for all layers and heads: on the calibration queries, the
share of (query, key) pairs whose cluster passes equals the budget. It accumulates a
weighted histogram of the log-estimates, so its memory does not grow with the context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from quarry.memory.config import SqueezedConfig
from quarry.memory.squeezed import SqueezedIndex, Thresholds, floor_top, log_sizes

LOG_FLOOR = -80.0  # log-estimates below this share the lowest histogram bin
BINS = 8000


def kmeans(points: np.ndarray, clusters: int, config: SqueezedConfig, weights: np.ndarray | None = None) -> np.ndarray:
    """Spherical K-means labels (N,) of normalised float32 points (N, D) with faiss (on
    the GPUs when faiss was built with GPU support and sees one)."""
    import faiss

    n, d = points.shape
    clusters = max(1, min(clusters, n))
    if clusters == 1:
        return np.zeros(n, dtype=np.int64)
    km = faiss.Kmeans(
        d,
        clusters,
        niter=config.kmeans_iterations,
        seed=config.seed,
        spherical=True,
        max_points_per_centroid=config.kmeans_max_points_per_centroid,
        min_points_per_centroid=1,
        verbose=False,
        gpu=bool(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else False,
    )
    km.train(points, weights=weights)
    _, labels = km.index.search(points, 1)  # (N, 1)
    return labels[:, 0].astype(np.int64)


def build_index(keys: torch.Tensor, values: torch.Tensor, config: SqueezedConfig) -> SqueezedIndex:
    """The clustered index of one layer from its context keys/values (Hkv, N, D)."""
    hkv, n, _ = keys.shape
    fine_count = max(1, min(n, round(config.cluster_share * n)))
    coarse_count = max(1, min(fine_count, round(config.coarse_share * n))) if config.hierarchical else 0
    slots = min(math.ceil(config.outlier_share * n), n - 1)
    heads = [_cluster_head(keys[h], values[h], fine_count, coarse_count, slots, config) for h in range(hkv)]
    return SqueezedIndex(**{name: torch.stack([head[name] for head in heads]) for name in heads[0]})


def _cluster_head(
    keys: torch.Tensor,
    values: torch.Tensor,
    fine_count: int,
    coarse_count: int,
    slots: int,
    config: SqueezedConfig,
) -> dict[str, torch.Tensor]:
    """One head: `fine_count` K-means clusters of the ordinary keys plus `slots`
    single-key clusters for norm outliers (unused slots stay empty); with
    `coarse_count` > 0, K-means over the fine centroids gives the coarse level, and the
    outliers' clusters form one more coarse cluster that is always open."""
    device, dtype = keys.device, keys.dtype
    x = keys.float()  # (N, D)
    n = x.shape[0]
    norms = x.norm(dim=-1)  # (N,)
    outlier = torch.zeros(n, dtype=torch.bool, device=device)  # (N,)
    if slots:
        top = norms.topk(slots).indices  # (slots,)
        outlier[top[norms[top] > config.outlier_ratio * norms.median()]] = True
    inliers = torch.nonzero(~outlier).flatten()  # (N_in,)
    fine = torch.empty(n, dtype=torch.long, device=device)  # (N,)
    unit = torch.nn.functional.normalize(x[inliers], dim=-1).cpu().numpy()  # (N_in, D)
    fine[inliers] = torch.from_numpy(kmeans(unit, fine_count, config)).to(device)
    fine[outlier] = fine_count + torch.arange(int(outlier.sum()), device=device)
    total = fine_count + slots
    sizes = torch.bincount(fine, minlength=total)  # (C,)
    means = _means(x, fine, total)  # (C, D)
    if coarse_count:
        directions = torch.nn.functional.normalize(means[:fine_count], dim=-1).cpu().numpy()  # (C_k, D)
        weights = sizes[:fine_count].float().cpu().numpy()  # (C_k,)
        grouped = torch.from_numpy(kmeans(directions, coarse_count, config, weights)).to(device)  # (C_k,)
        parent = torch.cat([grouped, torch.full((slots,), coarse_count, device=device)])  # (C,)
        is_open = torch.arange(coarse_count + 1, device=device) == coarse_count  # (C1,)
    else:
        parent = torch.zeros(total, dtype=torch.long, device=device)  # (C,)
        is_open = torch.zeros(1, dtype=torch.bool, device=device)  # (1,)
    fine_order = torch.argsort(parent, stable=True)  # (C,) new fine id -> old
    renumber = torch.empty_like(fine_order)  # (C,) old fine id -> new
    renumber[fine_order] = torch.arange(total, device=device)
    label = renumber[fine]  # (N,)
    key_order = torch.argsort(label, stable=True)  # (N,)
    coarse_of_key = parent[fine]  # (N,)
    groups = is_open.shape[0]
    return {
        "keys": keys[key_order],  # (N, D)
        "values": values[key_order],  # (N, D)
        "positions": key_order.to(torch.int32),  # (N,)
        "centroids": means[fine_order].to(dtype),  # (C, D)
        "sizes": sizes[fine_order],  # (C,)
        "coarse_centroids": _means(x, coarse_of_key, groups).to(dtype),  # (C1, D)
        "coarse_sizes": torch.bincount(coarse_of_key, minlength=groups),  # (C1,)
        "coarse_fanout": torch.bincount(parent, minlength=groups),  # (C1,)
        "coarse_open": is_open,  # (C1,)
    }


def _means(x: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Mean of the rows of x (N, D) per label: (count, D), zero for empty labels."""
    sums = torch.zeros((count, x.shape[1]), dtype=torch.float32, device=x.device)  # (count, D)
    sums.index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=count).clamp(min=1)  # (count,)
    return sums / counts[:, None]  # (count, D)


class _Histogram:
    """Weighted histogram of log-estimates in [LOG_FLOOR, 0]."""

    def __init__(self) -> None:
        self.weights = torch.zeros(BINS + 1, dtype=torch.float64)  # (BINS+1,)
        self.edges = torch.linspace(LOG_FLOOR, 0.0, BINS + 1, dtype=torch.float64)  # (BINS+1,)

    def add(self, log_p: torch.Tensor, weight: torch.Tensor) -> None:
        values = log_p.double().clamp(min=LOG_FLOOR, max=0.0).flatten().cpu()  # (M,)
        bins = torch.bucketize(values, self.edges, right=True) - 1  # (M,)
        self.weights.index_add_(0, bins.clamp(0, BINS), weight.double().flatten().cpu())

    def threshold(self, share: float, total: float) -> float:
        """The largest log-threshold that passes at least `share` of `total` weight."""
        if share >= 1.0:
            return -math.inf
        from_top = torch.flip(torch.cumsum(torch.flip(self.weights, [0]), 0), [0])  # (BINS+1,)
        enough = torch.nonzero(from_top >= share * total).flatten()  # bins whose lower edge suffices
        if enough.numel() == 0:
            return -math.inf
        i = int(enough.max())
        return -math.inf if i == 0 else float(self.edges[i])


def calibrate(
    indexes: Sequence[SqueezedIndex], queries: Sequence[torch.Tensor], config: SqueezedConfig, scaling: float
) -> Thresholds:
    """Global thresholds from each layer's calibration queries (1, Hq, W, D), for the
    union semantics of `squeezed_attention`: a cluster is read for a (KV head, query
    token) when it passes for any query head of the group, so the budget is a share of
    the keys actually read."""
    if config.key_budget >= 1.0:
        return Thresholds.keep_all()
    coarse_hist, total = _Histogram(), 0.0
    hierarchical = indexes[0].hierarchical
    prepared: list[tuple[SqueezedIndex, torch.Tensor, int, torch.Tensor | None, torch.Tensor | None]] = []
    for index, query in zip(indexes, queries, strict=True):
        hkv, d = index.keys.shape[0], index.keys.shape[2]
        _, hq, w, _ = query.shape
        q = query[0].reshape(hkv, -1, d).to(index.keys.dtype)  # (Hkv, G*W, D)
        total += float(hkv * w)
        if hierarchical:
            coarse = torch.matmul(q, index.coarse_centroids.transpose(1, 2)).float() * scaling  # (Hkv, G*W, C1)
            log_n = log_sizes(index.coarse_sizes)[:, None, :]  # (Hkv, 1, C1)
            log_z = torch.logsumexp(coarse + log_n, dim=-1, keepdim=True)  # (Hkv, G*W, 1)
            best = _group_max(coarse - log_z, hq // hkv)  # (Hkv, W, C1)
            share = (index.coarse_sizes.float() / index.length)[:, None, :].expand_as(best)  # (Hkv, W, C1)
            coarse_hist.add(best, share)
            prepared.append((index, q, hq // hkv, coarse, log_z))
        else:
            prepared.append((index, q, hq // hkv, None, None))
    coarse_threshold = coarse_hist.threshold(config.coarse_budget, total) if hierarchical else -math.inf
    fine_hist = _Histogram()
    for index, q, group, coarse_scores, coarse_lse in prepared:
        fine = torch.matmul(q, index.centroids.transpose(1, 2)).float() * scaling  # (Hkv, G*W, C)
        allowed = (index.sizes > 0)[:, None, :].expand_as(fine)  # (Hkv, G*W, C)
        if coarse_scores is not None and coarse_lse is not None:
            coarse_allowed = (index.coarse_sizes > 0)[:, None, :].expand_as(coarse_scores)  # (Hkv, G*W, C1)
            passed = (coarse_scores - coarse_lse >= coarse_threshold) & coarse_allowed  # (Hkv, G*W, C1)
            passed = floor_top(passed, coarse_scores, coarse_allowed, 1) | index.coarse_open[:, None, :]
            visible = passed.gather(2, index.parents[:, None, :].expand(-1, q.shape[1], -1))  # (Hkv, G*W, C)
            allowed = allowed & visible
            normaliser = coarse_lse  # (Hkv, G*W, 1)
        else:
            normaliser = torch.logsumexp(fine + log_sizes(index.sizes)[:, None, :], dim=-1, keepdim=True)
        estimate = (fine - normaliser).masked_fill(~allowed, -math.inf)  # (Hkv, G*W, C)
        best = _group_max(estimate, group)  # (Hkv, W, C)
        share = (index.sizes.float() / index.length)[:, None, :] * torch.isfinite(best)  # (Hkv, W, C)
        fine_hist.add(best, share)
    return Thresholds(fine=fine_hist.threshold(config.key_budget, total), coarse=coarse_threshold)


def _group_max(log_p: torch.Tensor, group: int) -> torch.Tensor:
    """Max over the query heads of each KV head: (Hkv, G*W, C) -> (Hkv, W, C)."""
    hkv, gw, c = log_p.shape
    return log_p.view(hkv, group, gw // group, c).amax(dim=1)  # (Hkv, W, C)
