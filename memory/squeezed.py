"""Squeezed Attention over a cached fixed context (Hooper et al. 2024, "Squeezed Attention:
Accelerating Long Context Length LLM Inference").

Offline (see `memory.clustering` and `memory.context`), the fixed context is prefilled
once and its keys are clustered per layer and KV head. Online, each query of the question
scores the cluster centroids; exact attention runs over the keys of the clusters whose
estimated per-key attention passes a calibrated threshold, and is merged by log-sum-exp
with causal attention over the question's own tokens (and the generated ones).

The estimate for cluster j is the paper's: exp(q·c_j) / sum_i n_i exp(q·c_i), with c_j the
mean of the cluster's keys and n_j its size. In the hierarchical (two-level) lookup the
query first scores coarse centroids; only the fine centroids under the coarse clusters
that pass are gathered and scored, so the fine-level comparisons of pruned coarse clusters
are never computed. Both levels share the coarse estimate of the normaliser.

Keys of each head are stored sorted by cluster (fine clusters grouped under their coarse
cluster), so a cluster is a contiguous span. Clusters are chosen per query head; the query
heads sharing a KV head read the union of their clusters. Keys of outlying norm have a
cluster of their own under an always-open coarse cluster (see `SqueezedConfig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer

from quarry.memory.attention import Partial, attend, causal_mask, exact_attention, merge
from quarry.memory.errors import MemoryConfigError
from quarry.memory.interface import check_model, hand_over

INDEX_TENSORS = (
    "keys",
    "values",
    "positions",
    "centroids",
    "sizes",
    "coarse_centroids",
    "coarse_sizes",
    "coarse_fanout",
    "coarse_open",
)


@dataclass
class SqueezedIndex:
    """One layer's clustered fixed context. Per KV head, keys are sorted by fine cluster,
    and fine clusters by coarse cluster."""

    keys: torch.Tensor  # (Hkv, N, D), rotated at their positions 0..N-1
    values: torch.Tensor  # (Hkv, N, D)
    positions: torch.Tensor  # (Hkv, N) int32, each sorted key's position in the context
    centroids: torch.Tensor  # (Hkv, C, D), mean of each fine cluster's keys
    sizes: torch.Tensor  # (Hkv, C), keys per fine cluster (long)
    coarse_centroids: torch.Tensor  # (Hkv, C1, D), mean of each coarse cluster's keys
    coarse_sizes: torch.Tensor  # (Hkv, C1), keys per coarse cluster (long)
    coarse_fanout: torch.Tensor  # (Hkv, C1), fine clusters per coarse cluster (long)
    coarse_open: torch.Tensor  # (Hkv, C1) bool, coarse clusters always looked into (outlier keys)
    labels: torch.Tensor = field(init=False)  # (Hkv, N), fine cluster of each sorted key
    parents: torch.Tensor = field(init=False)  # (Hkv, C), coarse cluster of each fine cluster
    starts: torch.Tensor = field(init=False)  # (Hkv, C), first sorted key of each fine cluster

    def __post_init__(self) -> None:
        self.labels = _spans(self.sizes)  # (Hkv, N)
        self.parents = _spans(self.coarse_fanout)  # (Hkv, C)
        self.starts = torch.cumsum(self.sizes, dim=1) - self.sizes  # (Hkv, C)

    @property
    def length(self) -> int:
        return int(self.keys.shape[1])

    @property
    def hierarchical(self) -> bool:
        return int(self.coarse_centroids.shape[1]) > 1

    def to(self, device: torch.device | str) -> SqueezedIndex:
        return SqueezedIndex(**{name: getattr(self, name).to(device) for name in INDEX_TENSORS})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in INDEX_TENSORS}


@dataclass(frozen=True)
class Thresholds:
    """Log-thresholds on the estimated per-key attention: `fine` for the clusters whose
    keys are attended, `coarse` for the first level of the hierarchical lookup. -inf keeps
    everything."""

    fine: float
    coarse: float

    @classmethod
    def keep_all(cls) -> Thresholds:
        return cls(-math.inf, -math.inf)

    def tensor(self) -> torch.Tensor:
        return torch.tensor([self.fine, self.coarse], dtype=torch.float64)  # (2,)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> Thresholds:
        return cls(float(t[0]), float(t[1]))


@dataclass(frozen=True)
class Selection:
    """Which fine clusters each query attends: `passed` (Hkv, G*T, C) bool, and how many
    fine centroids each head was compared with (C for the flat lookup)."""

    passed: torch.Tensor
    fine_compared: torch.Tensor  # (Hkv,)


@dataclass
class SqueezedStats:
    """Running counts of one cache (or one call): keys attended out of keys available
    (summed over queries and query heads), fine centroid comparisons made out of possible."""

    keys_attended: int = 0
    keys_available: int = 0
    fine_compared: int = 0
    fine_possible: int = 0

    @property
    def key_share(self) -> float:
        return self.keys_attended / self.keys_available if self.keys_available else 0.0

    def add(self, other: SqueezedStats) -> None:
        self.keys_attended += other.keys_attended
        self.keys_available += other.keys_available
        self.fine_compared += other.fine_compared
        self.fine_possible += other.fine_possible


# -- pure functions ----------------------------------------------------------------------


def compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise positions of True in mask (H, N): indices (H, M) padded with 0 and their
    validity (H, M), M the largest count of a row."""
    counts = mask.sum(dim=-1)  # (H,)
    width = max(int(counts.max()), 1) if counts.numel() else 1
    rows, cols = mask.nonzero(as_tuple=True)  # (nnz,), (nnz,)
    starts = torch.cumsum(counts, 0) - counts  # (H,)
    slots = torch.arange(rows.shape[0], device=mask.device) - starts[rows]  # (nnz,)
    index = torch.zeros((mask.shape[0], width), dtype=torch.long, device=mask.device)  # (H, M)
    index[rows, slots] = cols
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]  # (H, M)
    return index, valid


def floor_top(passed: torch.Tensor, scores: torch.Tensor, allowed: torch.Tensor, count: int) -> torch.Tensor:
    """Also passes, per query, the `count` allowed clusters with the highest scores."""
    if count <= 0:
        return passed
    k = min(count, scores.shape[-1])
    ranked = scores.masked_fill(~allowed, float("-inf"))  # (Hkv, Q, C)
    top = ranked.topk(k, dim=-1)  # (Hkv, Q, k)
    keep = torch.zeros_like(passed).scatter_(-1, top.indices, torch.isfinite(top.values))  # (Hkv, Q, C)
    return passed | keep


def log_sizes(sizes: torch.Tensor) -> torch.Tensor:
    return torch.log(sizes.float())  # (Hkv, C); -inf for empty clusters


def select_clusters(
    queries: torch.Tensor, index: SqueezedIndex, thresholds: Thresholds, scaling: float, min_clusters: int
) -> Selection:
    """Fine clusters whose estimated per-key attention passes, for queries (Hkv, Q, D)
    (the query heads of each KV head folded into Q)."""
    hkv, q, _ = queries.shape
    c = index.centroids.shape[1]
    if not index.hierarchical:
        scores = torch.matmul(queries, index.centroids.transpose(1, 2)).float() * scaling  # (Hkv, Q, C)
        log_n = log_sizes(index.sizes)[:, None, :]  # (Hkv, 1, C)
        log_z = torch.logsumexp(scores + log_n, dim=-1, keepdim=True)  # (Hkv, Q, 1)
        allowed = (index.sizes > 0)[:, None, :].expand(-1, q, -1)  # (Hkv, Q, C)
        passed = (scores - log_z >= thresholds.fine) & allowed  # (Hkv, Q, C)
        passed = floor_top(passed, scores, allowed, min_clusters)  # (Hkv, Q, C)
        return Selection(passed, torch.full((hkv,), c, device=queries.device))

    coarse = torch.matmul(queries, index.coarse_centroids.transpose(1, 2)).float() * scaling  # (Hkv, Q, C1)
    log_z = torch.logsumexp(coarse + log_sizes(index.coarse_sizes)[:, None, :], dim=-1, keepdim=True)  # (Hkv, Q, 1)
    coarse_allowed = (index.coarse_sizes > 0)[:, None, :].expand(-1, q, -1)  # (Hkv, Q, C1)
    coarse_passed = (coarse - log_z >= thresholds.coarse) & coarse_allowed  # (Hkv, Q, C1)
    coarse_passed = floor_top(coarse_passed, coarse, coarse_allowed, min_clusters)  # (Hkv, Q, C1)
    coarse_passed = coarse_passed | index.coarse_open[:, None, :]  # (Hkv, Q, C1)
    visible = coarse_passed.gather(2, index.parents[:, None, :].expand(-1, q, -1))  # (Hkv, Q, C)
    fine_index, fine_valid = compact(visible.any(dim=1))  # (Hkv, F), (Hkv, F)
    d = index.centroids.shape[-1]
    gathered = index.centroids.gather(1, fine_index[..., None].expand(-1, -1, d))  # (Hkv, F, D)
    fine = torch.matmul(queries, gathered.transpose(1, 2)).float() * scaling  # (Hkv, Q, F)
    sizes = index.sizes.gather(1, fine_index)  # (Hkv, F)
    allowed = visible.gather(2, fine_index[:, None, :].expand(-1, q, -1))  # (Hkv, Q, F)
    allowed = allowed & (fine_valid & (sizes > 0))[:, None, :]  # (Hkv, Q, F)
    passed_f = (fine - log_z >= thresholds.fine) & allowed  # (Hkv, Q, F)
    passed_f = floor_top(passed_f, fine, allowed, min_clusters)  # (Hkv, Q, F)
    target = torch.where(fine_valid, fine_index, c)  # (Hkv, F); padding goes to a spare column
    passed = torch.zeros((hkv, q, c + 1), dtype=torch.bool, device=queries.device)  # (Hkv, Q, C+1)
    passed.scatter_(2, target[:, None, :].expand(-1, q, -1), passed_f)  # (Hkv, Q, C+1)
    return Selection(passed[:, :, :c], fine_valid.sum(dim=1))


def cluster_rows(chosen: torch.Tensor, sizes: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Ascending positions, in one head's sorted keys, of the keys in the chosen clusters
    (C,) bool. Clusters are contiguous spans, so the cost is in the chosen keys, not N."""
    clusters = chosen.nonzero().flatten()  # (P,)
    lengths = sizes[clusters]  # (P,)
    offsets = torch.cumsum(lengths, 0) - lengths  # (P,)
    total = int(lengths.sum())
    shift = torch.repeat_interleave(starts[clusters] - offsets, lengths)  # (K,)
    return torch.arange(total, device=chosen.device) + shift  # (K,)


@dataclass(frozen=True)
class ContextRead:
    """Squeezed attention over the fixed context for one forward: the partial attention,
    the counts, and which sorted keys each KV head read."""

    part: Partial
    stats: SqueezedStats
    rows: list[torch.Tensor]  # per KV head, (K_h,) positions in that head's sorted keys

    def positions(self, index: SqueezedIndex) -> list[torch.Tensor]:
        """Per KV head, the context positions of the keys read."""
        return [index.positions[h][rows] for h, rows in enumerate(self.rows)]


def squeezed_attention(
    query: torch.Tensor, index: SqueezedIndex, thresholds: Thresholds, scaling: float, min_clusters: int = 1
) -> ContextRead:
    """Attention of query (1, Hq, T, D) over the fixed context's keys in passing clusters,
    with the counts of what was used. Clusters are chosen per query head; the query heads
    that share a KV head attend the union of their clusters (one read of those keys for
    the group; a superset only adds exact attention mass). Each query token keeps its own
    clusters. Heads read different numbers of keys, so they are attended one by one
    rather than padded to the largest."""
    _, hq, t, d = query.shape
    hkv, n = index.keys.shape[0], index.length
    g = hq // hkv
    queries = query[0].reshape(hkv, g * t, d)  # (Hkv, G*T, D)
    selection = select_clusters(queries, index, thresholds, scaling, min_clusters)  # (Hkv, G*T, C)
    per_token = selection.passed.view(hkv, g, t, -1).any(dim=1)  # (Hkv, T, C)
    chosen = per_token.any(dim=1)  # (Hkv, C)
    outs, lses, reads, attended = [], [], [], 0
    for h in range(hkv):
        rows = cluster_rows(chosen[h], index.sizes[h], index.starts[h])  # (K,)
        keys = index.keys[h].index_select(0, rows)  # (K, D)
        values = index.values[h].index_select(0, rows)  # (K, D)
        mask = None
        if t > 1:
            mask = per_token[h].gather(1, index.labels[h][rows][None, :].expand(t, -1))  # (T, K)
            attended += int(mask.sum()) * g
        else:
            attended += int(rows.shape[0]) * g
        head = query[:, h * g : (h + 1) * g]  # (1, G, T, D)
        part = attend(head, keys[None, None], values[None, None], scaling, mask)  # (1, G, T, D)
        outs.append(part.out)
        lses.append(part.lse)
        reads.append(rows)
    stats = SqueezedStats(
        keys_attended=attended,
        keys_available=n * hq * t,
        fine_compared=int(selection.fine_compared.sum()) * g * t,
        fine_possible=int(index.centroids.shape[1]) * hkv * g * t,
    )
    return ContextRead(Partial(torch.cat(outs, dim=1), torch.cat(lses, dim=1)), stats, reads)


# -- caches --------------------------------------------------------------------------------


class SqueezedLayer(CacheLayerMixin):
    """One layer: the shared clustered fixed context plus this question's own tokens."""

    is_compileable = False
    is_croppable = False

    def __init__(self, index: SqueezedIndex, thresholds: Thresholds, min_clusters: int, stats: SqueezedStats) -> None:
        super().__init__()
        self.index = index
        self.thresholds = thresholds
        self.min_clusters = min_clusters
        self.stats = stats
        self.own_k: torch.Tensor | None = None  # (1, Hkv, L, D)
        self.own_v: torch.Tensor | None = None  # (1, Hkv, L, D)
        self.last_read: ContextRead | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        if key_states.shape[0] != 1:
            raise MemoryConfigError("the Squeezed Attention cache supports batch size 1")
        if key_states.shape[1] != self.index.keys.shape[0] or key_states.shape[3] != self.index.keys.shape[2]:
            raise MemoryConfigError("the stored fixed context does not match the model's KV heads")
        self.own_k = key_states[:, :, :0]  # (1, Hkv, 0, D)
        self.own_v = value_states[:, :, :0]  # (1, Hkv, 0, D)
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self.own_k is not None and self.own_v is not None
        self.own_k = torch.cat([self.own_k, key_states], dim=2)  # (1, Hkv, L+T, D)
        self.own_v = torch.cat([self.own_v, value_states], dim=2)  # (1, Hkv, L+T, D)
        return hand_over(self.own_k, self), self.own_v

    def get_seq_length(self) -> int:
        own = 0 if self.own_k is None else int(self.own_k.shape[2])
        return self.index.length + own

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.own_k = self.own_v = None
        self.is_initialized = False

    def attend(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """Queries (1, Hq, T, D) of the newest T own tokens -> (1, Hq, T, D)."""
        assert self.own_k is not None and self.own_v is not None
        t, own = query.shape[2], self.own_k.shape[2]
        read = squeezed_attention(query, self.index, self.thresholds, scaling, self.min_clusters)
        self.last_read = read
        positions = torch.arange(own, device=query.device)  # (L,)
        mine = attend(query, self.own_k, self.own_v, scaling, causal_mask(positions[own - t :], positions))
        self.stats.add(read.stats)
        out, _ = merge([read.part, mine])  # (1, Hq, T, D)
        return out


class SqueezedCache(Cache):
    """A question's cache over a cached fixed context: generate with the full prompt ids
    (context first) and this cache; transformers skips the context's tokens since the
    cache reports them as seen. Make one per question; the indexes are shared, read-only."""

    def __init__(self, indexes: list[SqueezedIndex], thresholds: Thresholds, min_clusters: int = 1) -> None:
        self.squeezed_stats = SqueezedStats()
        layers: list[Any] = [SqueezedLayer(ix, thresholds, min_clusters, self.squeezed_stats) for ix in indexes]
        super().__init__(layers=layers)

    @classmethod
    def for_model(
        cls, model: Any, indexes: list[SqueezedIndex], thresholds: Thresholds, min_clusters: int = 1
    ) -> SqueezedCache:
        check_model(model.config)
        if len(indexes) != model.config.get_text_config().num_hidden_layers:
            raise MemoryConfigError("the stored fixed context has another number of layers than the model")
        return cls(indexes, thresholds, min_clusters)


class ContextLayer(DynamicLayer):
    """A plain growing layer that also keeps the last `window` queries (the calibration
    queries of the fixed context)."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        self.queries: torch.Tensor | None = None  # (1, Hq, <=window, D)
        self.scaling: float | None = None  # the model's attention scaling, seen on the first call

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(key_states, value_states)
        return hand_over(keys, self), values

    def attend(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        assert self.keys is not None and self.values is not None
        recent = query if self.queries is None else torch.cat([self.queries, query], dim=2)  # (1, Hq, W+T, D)
        self.queries = recent[:, :, -self.window :].clone()  # (1, Hq, W, D)
        self.scaling = scaling
        return exact_attention(query, self.keys, self.values, scaling)  # (1, Hq, T, D)


class ContextPrefillCache(Cache):
    """The cache of the offline prefill of a fixed context: exact attention, full KV, and
    the last queries of every layer for threshold calibration."""

    def __init__(self, num_layers: int, window: int) -> None:
        layers: list[Any] = [ContextLayer(window) for _ in range(num_layers)]
        super().__init__(layers=layers)

    def context_layers(self) -> list[ContextLayer]:
        return [layer for layer in self.layers if isinstance(layer, ContextLayer)]


def _spans(counts: torch.Tensor) -> torch.Tensor:
    """Per row of counts (H, C), the owner of each slot when owner j holds counts[j]
    consecutive slots: (H, sum of a row) (every row has the same sum)."""
    owners = torch.arange(counts.shape[1], device=counts.device)  # (C,)
    rows = [torch.repeat_interleave(owners, row) for row in counts]  # each (S,)
    return torch.stack(rows)  # (H, S)
