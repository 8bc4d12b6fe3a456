"""Squeezed Attention at the attention level: exact when every key is kept, a dominant
key always attended, the hierarchical lookup really skips fine comparisons, the
calibrated threshold meets its budget."""

from __future__ import annotations

import math

import pytest
import torch

from quarry.memory.attention import attend
from quarry.memory.clustering import build_index, calibrate
from quarry.memory.config import SqueezedConfig
from quarry.memory.squeezed import SqueezedIndex, Thresholds, log_sizes, select_clusters, squeezed_attention

HKV, GROUP, D, N = 2, 2, 32, 3000
SCALE = D**-0.5


def clustered_keys(seed: int, n: int = N, centres: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys around a few directions (as real keys are), values, and the centres."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.nn.functional.normalize(torch.randn(HKV, centres, D, generator=g), dim=-1) * 3.0
    which = torch.randint(0, centres, (HKV, n), generator=g)
    keys = centre.gather(1, which[..., None].expand(-1, -1, D)) + 0.6 * torch.randn(HKV, n, D, generator=g)
    return keys, torch.randn(HKV, n, D, generator=g), centre


def queries_near(centre: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """(1, Hq, count, D) queries, each looking towards one centre of its KV head."""
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(0, centre.shape[1], (HKV, GROUP * count), generator=g)
    q = centre.gather(1, which[..., None].expand(-1, -1, D)) * 1.5 + 0.5 * torch.randn(
        HKV, GROUP * count, D, generator=g
    )
    return q.view(1, HKV * GROUP, count, D)


@pytest.mark.parametrize("hierarchical", [False, True])
def test_keeping_every_key_is_exact_attention(hierarchical: bool) -> None:
    keys, values, centre = clustered_keys(0)
    index = build_index(keys, values, SqueezedConfig(cluster_share=0.03, coarse_share=0.005, hierarchical=hierarchical))
    q = queries_near(centre, 5, seed=1)
    read = squeezed_attention(q, index, Thresholds.keep_all(), SCALE, min_clusters=0)
    part, stats = read.part, read.stats
    exact = attend(q, keys[None], values[None], SCALE)
    assert torch.allclose(part.out, exact.out, atol=1e-5)
    assert torch.allclose(part.lse, exact.lse, atol=1e-4)
    assert stats.key_share == 1.0
    original = keys.gather(1, index.positions.long()[..., None].expand(-1, -1, D))
    assert torch.equal(index.keys, original)  # each sorted key knows its context position


@pytest.mark.parametrize("hierarchical", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_a_planted_dominant_key_is_always_attended(hierarchical: bool, seed: int) -> None:
    keys, values, centre = clustered_keys(seed)
    g = torch.Generator().manual_seed(100 + seed)
    needle_dir = torch.nn.functional.normalize(torch.randn(HKV, D, generator=g), dim=-1)
    needle_at = int(torch.randint(0, N, (1,), generator=g))
    keys[:, needle_at] = 16.0 * needle_dir
    config = SqueezedConfig(cluster_share=0.03, coarse_share=0.005, hierarchical=hierarchical, key_budget=0.05)
    index = build_index(keys, values, config)
    thresholds = calibrate([index], [queries_near(centre, 32, seed=2)], config, SCALE)
    # the question's queries look for the needle: it dominates their exact attention
    q = (4.0 * needle_dir[:, None, :] + 0.3 * torch.randn(HKV, GROUP * 3, D, generator=g)).view(1, HKV * GROUP, 3, D)
    probs = attend(q, keys[None], values[None], SCALE, keep_probs=True).probs
    assert probs is not None and (probs[..., needle_at] > 0.5).all()
    selection = select_clusters(q[0].reshape(HKV, -1, D), index, thresholds, SCALE, config.min_clusters)
    for h in range(HKV):
        row = int(torch.nonzero((index.keys[h] == keys[h, needle_at]).all(dim=-1))[0])
        assert selection.passed[h, :, index.labels[h, row]].all()
    read = squeezed_attention(q, index, thresholds, SCALE, config.min_clusters)
    assert read.stats.key_share < 0.3
    assert all(needle_at in p.tolist() for p in read.positions(index))


def brute_force_hierarchical(queries: torch.Tensor, index: SqueezedIndex, thresholds: Thresholds) -> torch.Tensor:
    """The same two-level rule computed over every fine centroid: (Hkv, Q, C)."""
    coarse = queries @ index.coarse_centroids.transpose(1, 2) * SCALE
    log_z = torch.logsumexp(coarse + log_sizes(index.coarse_sizes)[:, None, :], dim=-1, keepdim=True)
    coarse_ok = (coarse - log_z >= thresholds.coarse) & (index.coarse_sizes > 0)[:, None, :]
    top = coarse.masked_fill(~(index.coarse_sizes > 0)[:, None, :], -math.inf).argmax(dim=-1, keepdim=True)
    coarse_ok.scatter_(2, top, True)
    coarse_ok |= index.coarse_open[:, None, :]
    visible = coarse_ok.gather(2, index.parents[:, None, :].expand(-1, queries.shape[1], -1))
    fine = queries @ index.centroids.transpose(1, 2) * SCALE
    allowed = visible & (index.sizes > 0)[:, None, :]
    ok = (fine - log_z >= thresholds.fine) & allowed
    best = fine.masked_fill(~allowed, -math.inf).argmax(dim=-1, keepdim=True)
    return ok.scatter(2, best, True)


def test_hierarchical_lookup_skips_fine_centroids_of_pruned_coarse_clusters() -> None:
    keys, values, centre = clustered_keys(5)
    config = SqueezedConfig(cluster_share=0.05, coarse_share=0.005, key_budget=0.1, coarse_budget=0.3)
    index = build_index(keys, values, config)
    assert index.hierarchical and index.coarse_centroids.shape[1] == 15 + 1  # + the outliers' group
    thresholds = calibrate([index], [queries_near(centre, 32, seed=6)], config, SCALE)
    assert thresholds.coarse > -math.inf
    q = queries_near(centre, 1, seed=7)[0].reshape(HKV, GROUP, D)  # one decode step
    selection = select_clusters(q, index, thresholds, SCALE, min_clusters=1)
    assert torch.equal(selection.passed, brute_force_hierarchical(q, index, thresholds))
    # only the fine centroids under coarse clusters that passed for some query were compared
    coarse = q @ index.coarse_centroids.transpose(1, 2) * SCALE
    log_z = torch.logsumexp(coarse + log_sizes(index.coarse_sizes)[:, None, :], dim=-1, keepdim=True)
    passed = (coarse - log_z >= thresholds.coarse).any(dim=1)  # (Hkv, C1)
    passed.scatter_(1, coarse.argmax(dim=-1), True)
    passed |= index.coarse_open
    under = (index.coarse_fanout * passed).sum(dim=1)  # (Hkv,)
    assert torch.equal(selection.fine_compared, under)
    assert (selection.fine_compared < index.centroids.shape[1]).all()


@pytest.mark.parametrize("hierarchical", [False, True])
def test_calibrated_threshold_meets_the_budget_on_its_queries(hierarchical: bool) -> None:
    keys, values, centre = clustered_keys(9)
    config = SqueezedConfig(cluster_share=0.05, coarse_share=0.005, hierarchical=hierarchical, key_budget=0.1)
    index = build_index(keys, values, config)
    calibration = queries_near(centre, 48, seed=10)
    thresholds = calibrate([index], [calibration], config, SCALE)
    stats = squeezed_attention(calibration, index, thresholds, SCALE, min_clusters=0).stats
    assert 0.07 <= stats.key_share <= 0.13
    exact = attend(calibration, keys[None], values[None], SCALE, keep_probs=True).probs
    assert exact is not None
