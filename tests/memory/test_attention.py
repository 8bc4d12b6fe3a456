"""The attention primitives: log-sum-exp merging is exact, the fallback is causal."""

from __future__ import annotations

import torch

from quarry.memory.attention import attend, causal_mask, exact_attention, merge


def reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eager attention with repeated KV heads: (B, Hq, T, D)."""
    group = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(group, dim=1)  # (B, Hq, S, D)
    v = value.repeat_interleave(group, dim=1)  # (B, Hq, S, D)
    scores = (query @ k.transpose(-1, -2)) * 0.25  # (B, Hq, T, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def test_merged_parts_equal_attention_over_the_union() -> None:
    torch.manual_seed(0)
    q = torch.randn(1, 4, 5, 16)
    k, v = torch.randn(1, 2, 40, 16), torch.randn(1, 2, 40, 16)
    mask = causal_mask(torch.arange(35, 40), torch.arange(40))  # (5, 40)
    parts = [
        attend(q, k[:, :, :10], v[:, :, :10], 0.25),
        attend(q, k[:, :, 10:], v[:, :, 10:], 0.25, mask[:, 10:]),
    ]
    out, lse = merge(parts)
    assert torch.allclose(out, reference(q, k, v, mask), atol=1e-5)
    full = attend(q, k, v, 0.25, mask)
    assert torch.allclose(lse, full.lse, atol=1e-5)


def test_an_empty_part_changes_nothing() -> None:
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    nothing = torch.zeros(3, 6, dtype=torch.bool)
    empty = attend(q, k, v, 0.25, nothing)
    assert torch.isneginf(empty.lse).all() and (empty.out == 0).all()
    out, _ = merge([attend(q, k, v, 0.25), empty])
    assert torch.allclose(out, attend(q, k, v, 0.25).out)


def test_fallback_is_causal_with_a_past() -> None:
    torch.manual_seed(2)
    q, k, v = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    mask = causal_mask(torch.arange(6, 9), torch.arange(9))
    assert torch.allclose(exact_attention(q, k, v, 0.25), reference(q, k, v, mask), atol=1e-5)
