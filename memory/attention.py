"""Attention as pure functions that also return the log-sum-exp of the scores, so that
attention over disjoint key sets can be merged exactly (the way both mechanisms combine
memory with local or own tokens). Grouped-query attention is handled without repeating
keys: the query heads of one KV head are folded into the query axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FEW_QUERIES = 32  # up to this many queries per KV head, scores are computed keys-first


@dataclass(frozen=True)
class Partial:
    """Softmax attention over one set of keys: the normalised output and the log of
    its normaliser. `probs` is kept only when asked for."""

    out: torch.Tensor  # (B, Hq, T, D), float32
    lse: torch.Tensor  # (B, Hq, T), float32; -inf where no key was allowed
    probs: torch.Tensor | None = None  # (B, Hkv, G, T, S), float32


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float,
    mask: torch.Tensor | None = None,
    keep_probs: bool = False,
) -> Partial:
    """Attention of query (B, Hq, T, D) over key/value (B, Hkv, S, D); `mask` (bool,
    True = attend) broadcasts to (B, Hkv, G, T, S) with G = Hq / Hkv."""
    b, hq, t, d = query.shape
    hkv, s = key.shape[1], key.shape[2]
    g = hq // hkv
    q = query.reshape(b, hkv, g * t, d)  # (B, Hkv, G*T, D)
    if g * t <= FEW_QUERIES:
        # keys times queries: one pass over the keys, the cheap layout for decoding
        scores = torch.matmul(key, q.transpose(-1, -2)).float().transpose(-1, -2)  # (B, Hkv, G*T, S), a view
    else:
        scores = torch.matmul(q, key.transpose(-1, -2)).float()  # (B, Hkv, G*T, S)
    scores = scores.mul_(scaling).reshape(b, hkv, g, t, s)  # (B, Hkv, G, T, S)
    if mask is not None:
        scores = scores.masked_fill_(~mask, float("-inf"))  # (B, Hkv, G, T, S)
    peak = scores.amax(dim=-1, keepdim=True)  # (B, Hkv, G, T, 1)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))  # rows with no allowed key
    probs = scores.sub_(peak).exp_()  # (B, Hkv, G, T, S), unnormalised; 0 where masked
    total = probs.sum(dim=-1, keepdim=True)  # (B, Hkv, G, T, 1)
    lse = (peak + total.log()).squeeze(-1)  # (B, Hkv, G, T); -inf where no key was allowed
    probs = probs.div_(torch.where(total > 0, total, torch.ones_like(total)))  # (B, Hkv, G, T, S)
    out = torch.matmul(probs.reshape(b, hkv, g * t, s).to(value.dtype), value)  # (B, Hkv, G*T, D)
    return Partial(
        out=out.view(b, hq, t, d).float(),  # (B, Hq, T, D)
        lse=lse.reshape(b, hq, t),  # (B, Hq, T)
        probs=probs if keep_probs else None,
    )


def merge(parts: Sequence[Partial]) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact attention over the union of the parts' (disjoint) key sets: output
    (B, Hq, T, D) and log-sum-exp (B, Hq, T)."""
    lses = torch.stack([p.lse for p in parts])  # (P, B, Hq, T)
    total = torch.logsumexp(lses, dim=0)  # (B, Hq, T)
    safe = torch.where(torch.isfinite(total), total, torch.zeros_like(total))  # (B, Hq, T)
    weights = torch.exp(lses - safe)  # (P, B, Hq, T); 0 for empty parts
    out = sum(w[..., None] * p.out for w, p in zip(weights, parts, strict=True))  # (B, Hq, T, D)
    assert isinstance(out, torch.Tensor)
    return out, total


def causal_mask(query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
    """True where the key at key_positions (S,) is not after the query (T,): (T, S)."""
    return key_positions[None, :] <= query_positions[:, None]  # (T, S)


def exact_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
    """Causal attention where the T queries are the last T of the S keys, through
    PyTorch's fused kernels: (B, Hq, T, D) in the query's dtype. This is the path for
    models that use the memory attention without a memory cache."""
    t, s = query.shape[2], key.shape[2]
    gqa = query.shape[1] != key.shape[1]
    if t == s:
        return F.scaled_dot_product_attention(query, key, value, is_causal=t > 1, scale=scaling, enable_gqa=gqa)
    positions = torch.arange(s, device=query.device)  # (S,)
    mask = causal_mask(positions[s - t :], positions)  # (T, S)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=gqa)
