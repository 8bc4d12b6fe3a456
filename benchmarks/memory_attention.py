"""Attention-level benchmark of the memory layer: decode attention over long contexts with
cluster structure and planted needles.

For each context length, one layer's keys (Llama-3-8B shape by default: 8 KV heads, 4
query heads each, head dim 128) are drawn as segments of tokens about one topic (a topic
centre plus token noise), with a few planted "needle" keys of larger norm. Decode queries
look at topics or at needles. Systems, on the same keys and queries:

- exact-sdpa: `torch.nn.functional.scaled_dot_product_attention` (GQA);
- exact-grouped: the memory layer's own exact attention (query heads folded per KV head);
- squeezed-flat / squeezed-hier: Squeezed Attention with one or two centroid levels,
  thresholds calibrated on 64 other queries for `--budget` of the keys;
- infllm-blocks: InfLLM's unit selection alone at the same budget (top-k units of 128
  keys by 4 representative keys, chosen by the attention they got from the calibration
  queries), for comparison.

Columns: `out err` relative L2 error of the output vs exact; `mass` the exact attention
mass on the keys attended (attention-mass recall); `oracle` the mass of the best possible
key set of the same size; `needles` share of needle-seeking queries that attend their
needle; `keys` share of keys read; `ms/token` median time of one decode step (all heads);
`speedup` vs the faster exact system. Target at 32k, 10% budget: speedup >= 3 with
mass >= 0.9. The data are synthetic: real attention has heavier tails.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from common import apply_threads, base_parser, print_table, quiet_environment, say, write_json


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--group", type=int, default=4, help="Query heads per KV head.")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--budget", type=float, default=0.1, help="Share of keys to attend.")
    parser.add_argument("--cluster-share", type=float, default=0.02)
    parser.add_argument("--coarse-share", type=float, default=0.002)
    parser.add_argument("--steps", type=int, default=24, help="Decode queries measured per length.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs of each query (median kept).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)
    rows, results = [], []
    for n in args.lengths:
        say(f"context of {n} keys")
        for row in run_length(n, args):
            results.append(row)
            rows.append(
                [
                    n,
                    row["system"],
                    row["out_err"],
                    row["mass"],
                    row["oracle"],
                    row["needles"],
                    row["keys"],
                    f"{row['ms']:.2f}",
                    f"{row['speedup']:.2f}x",
                ]
            )
    columns = ["context", "system", "out err", "mass", "oracle", "needles", "keys", "ms/token", "speedup"]
    print_table(f"Decode attention, budget {args.budget:.0%} ({args.device}, {args.dtype})", columns, rows)
    write_json("memory_attention", args, {"rows": results})


def make_layer(n: int, args: Any, seed: int) -> dict[str, Any]:
    """Keys/values (Hkv, N, D) in topic segments with planted needles, and query makers."""
    import torch

    g = torch.Generator().manual_seed(seed)
    hkv, d = args.kv_heads, args.head_dim
    topics = max(8, n // 512)
    centres = torch.nn.functional.normalize(torch.randn(hkv, topics, d, generator=g), dim=-1)  # (Hkv, M, D)
    segment = 64
    topic_of = torch.randint(0, topics, (n // segment + 1,), generator=g).repeat_interleave(segment)[:n]  # (N,)
    keys = centres[:, topic_of] * 9.0 + torch.randn(hkv, n, d, generator=g) * 0.35  # (Hkv, N, D)
    needles = torch.randperm(n, generator=g)[:16]  # (16,)
    needle_dirs = torch.nn.functional.normalize(torch.randn(hkv, 16, d, generator=g), dim=-1)  # (Hkv, 16, D)
    keys[:, needles] = needle_dirs * 24.0
    values = torch.randn(hkv, n, d, generator=g)  # (Hkv, N, D)

    def queries(count: int, qseed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, Hq, count, D) queries; which needle each seeks (-1: a topic query)."""
        qg = torch.Generator().manual_seed(qseed)
        seeks = torch.where(torch.rand(count, generator=qg) < 0.25, torch.randint(0, 16, (count,), generator=qg), -1)
        base = torch.empty(hkv, count, d)
        for i, s in enumerate(seeks.tolist()):
            if s >= 0:
                base[:, i] = needle_dirs[:, s] * 6.0
            else:
                base[:, i] = centres[:, int(torch.randint(0, topics, (1,), generator=qg))] * 9.0
        q = base[:, None] + torch.randn(hkv, args.group, count, d, generator=qg) * 0.5  # (Hkv, G, count, D)
        return q.reshape(1, hkv * args.group, count, d), seeks

    return {"keys": keys, "values": values, "needles": needles, "queries": queries}


def run_length(n: int, args: Any) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    from quarry.memory.attention import attend
    from quarry.memory.clustering import build_index, calibrate
    from quarry.memory.config import SqueezedConfig
    from quarry.memory.squeezed import SqueezedIndex, select_clusters, squeezed_attention

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    layer = make_layer(n, args, args.seed)
    hkv, g, d = args.kv_heads, args.group, args.head_dim
    scale = d**-0.5
    keys, values = layer["keys"].to(device, dtype), layer["values"].to(device, dtype)
    config = SqueezedConfig(
        cluster_share=args.cluster_share, coarse_share=args.coarse_share, key_budget=args.budget, kmeans_iterations=10
    )
    started = time.perf_counter()
    hier = build_index(keys, values, config)
    build_s = time.perf_counter() - started
    say(f"  clustered in {build_s:.1f}s")
    flat = SqueezedIndex(**{**hier.tensors(), **_one_group(hier)})
    calibration, _ = layer["queries"](64, args.seed + 1)
    calibration = calibration.to(device, dtype)
    th_hier = calibrate([hier], [calibration], config, scale)
    th_flat = calibrate([flat], [calibration], replace(config, hierarchical=False), scale)
    blocks = InfLLMBlocks(keys, values, calibration, scale, args.budget)

    sorted_pos = hier.positions.long()  # (Hkv, N) context position of each sorted key
    stats: dict[str, dict[str, list[float]]] = {}

    def record(system: str, **values_: float) -> None:
        bucket = stats.setdefault(system, {})
        for k, v in values_.items():
            bucket.setdefault(k, []).append(v)

    qs, seeks = layer["queries"](args.steps, args.seed + 2)
    qs = qs.to(device, dtype)
    for step in range(args.steps):
        q = qs[:, :, step : step + 1]  # (1, Hq, 1, D)
        exact = attend(q, keys[None], values[None], scale, keep_probs=True)
        assert exact.probs is not None
        probs = exact.probs[0, :, :, 0].float()  # (Hkv, G, N)
        oracle = _oracle_mass(probs, args.budget)
        seeking = int(seeks[step])
        timings = {
            "exact-sdpa": _time(
                lambda q=q: F.scaled_dot_product_attention(q, keys[None], values[None], enable_gqa=True),
                args.repeats,
                device,
            ),
            "exact-grouped": _time(lambda q=q: attend(q, keys[None], values[None], scale), args.repeats, device),
        }
        for name in ("exact-sdpa", "exact-grouped"):
            record(name, out_err=0.0, mass=1.0, oracle=1.0, keys=1.0, ms=timings[name], needles=1.0)
        for name, index, th in (("squeezed-flat", flat, th_flat), ("squeezed-hier", hier, th_hier)):
            ms = _time(lambda q=q, index=index, th=th: squeezed_attention(q, index, th, scale), args.repeats, device)
            part = squeezed_attention(q, index, th, scale).part
            passed = select_clusters(q[0].reshape(hkv, g, d), index, th, scale, 1).passed.any(dim=1)  # (Hkv, C)
            attended = passed.gather(1, index.labels)  # (Hkv, N), sorted order
            in_context = torch.zeros_like(attended).scatter_(1, sorted_pos, attended)  # (Hkv, N), context order
            mass = float((probs * in_context[:, None, :]).sum(-1).mean())
            found = float(in_context[:, layer["needles"][seeking]].all()) if seeking >= 0 else None
            record(
                name,
                out_err=_rel_err(part.out, exact.out),
                mass=mass,
                oracle=oracle,
                ms=ms,
                keys=float(attended.float().mean()),
                **({"needles": found} if found is not None else {}),
            )
        ms = _time(lambda q=q: blocks(q), args.repeats, device)
        out, mask = blocks(q)
        found = float(mask[:, layer["needles"][seeking]].all()) if seeking >= 0 else None
        record(
            "infllm-blocks",
            out_err=_rel_err(out, exact.out),
            mass=float((probs * mask[:, None, :]).sum(-1).mean()),
            oracle=oracle,
            ms=ms,
            keys=float(mask.float().mean()),
            **({"needles": found} if found is not None else {}),
        )
    fastest_exact = min(statistics.median(stats[s]["ms"]) for s in ("exact-sdpa", "exact-grouped"))
    rows = []
    for system, bucket in stats.items():
        ms = statistics.median(bucket["ms"])
        rows.append(
            {
                "context": n,
                "system": system,
                "out_err": statistics.fmean(bucket["out_err"]),
                "mass": statistics.fmean(bucket["mass"]),
                "oracle": statistics.fmean(bucket["oracle"]),
                "needles": statistics.fmean(bucket["needles"]) if bucket.get("needles") else float("nan"),
                "keys": statistics.fmean(bucket["keys"]),
                "ms": ms,
                "speedup": fastest_exact / ms,
                "build_s": build_s if system.startswith("squeezed") else 0.0,
            }
        )
    return rows


class InfLLMBlocks:
    """InfLLM's unit selection alone: units of 128 consecutive keys, 4 representative keys
    each (the keys the calibration queries attended most), top-k units by the query's
    mean score against them, k = budget * N / 128."""

    def __init__(self, keys: Any, values: Any, calibration: Any, scale: float, budget: float, block: int = 128) -> None:
        import torch

        from quarry.memory.attention import attend
        from quarry.memory.infllm import representative_keys

        hkv, n, d = keys.shape
        self.keys, self.values, self.scale, self.block = keys, values, scale, block
        self.units = n // block
        self.k = max(1, round(budget * n / block))
        probs = attend(calibration, keys[None], values[None], scale, keep_probs=True).probs
        assert probs is not None
        received = probs[0].float().sum(dim=(1, 2))[:, : self.units * block]  # (Hkv, U*B)
        unit_keys = keys[:, : self.units * block].reshape(hkv, self.units, block, d)  # (Hkv, U, B, D)
        unit_score = received.reshape(hkv, self.units, block)  # (Hkv, U, B)
        self.reps = torch.stack(
            [representative_keys(unit_keys[:, u], unit_score[:, u], 4) for u in range(self.units)], dim=1
        )  # (Hkv, U, 4, D)

    def __call__(self, query: Any) -> tuple[Any, Any]:
        import torch

        from quarry.memory.attention import attend
        from quarry.memory.infllm import score_blocks, select_blocks

        hkv, _, _, d = self.reps.shape
        mean = query[0].mean(dim=1).view(hkv, -1, d).sum(dim=1)  # (Hkv, D)
        chosen = select_blocks(score_blocks(mean, self.reps), self.k, per_head=True)  # (Hkv, k)
        rows = (chosen[..., None] * self.block + torch.arange(self.block, device=chosen.device)).flatten(
            1
        )  # (Hkv, k*B)
        n = self.keys.shape[1]
        flat = (rows + torch.arange(hkv, device=rows.device)[:, None] * n).flatten()  # (Hkv*k*B,)
        keys = self.keys.reshape(-1, d).index_select(0, flat).view(hkv, -1, d)  # (Hkv, k*B, D)
        values = self.values.reshape(-1, d).index_select(0, flat).view(hkv, -1, d)  # (Hkv, k*B, D)
        out = attend(query, keys[None], values[None], self.scale).out
        mask = torch.zeros(hkv, self.keys.shape[1], dtype=torch.bool, device=rows.device).scatter_(1, rows, True)
        return out, mask


def _one_group(index: Any) -> dict[str, Any]:
    """The coarse level collapsed into one group: the same fine clusters, flat lookup."""
    import torch

    hkv, c1, d = index.coarse_centroids.shape
    sizes = index.coarse_sizes.float()[..., None]  # (Hkv, C1, 1)
    mean = (index.coarse_centroids.float() * sizes).sum(1, keepdim=True) / sizes.sum(1, keepdim=True)  # (Hkv, 1, D)
    return {
        "coarse_centroids": mean.to(index.coarse_centroids.dtype),
        "coarse_sizes": index.coarse_sizes.sum(1, keepdim=True),
        "coarse_fanout": index.coarse_fanout.sum(1, keepdim=True),
        "coarse_open": torch.zeros(hkv, 1, dtype=torch.bool, device=index.keys.device),
    }


def _oracle_mass(probs: Any, budget: float) -> float:
    """Mass of the top `budget` share of keys per KV head, for the group's union."""
    k = max(1, round(budget * probs.shape[-1]))
    top = probs.sum(dim=1).topk(k, dim=-1).indices  # (Hkv, k)
    picked = probs.gather(2, top[:, None, :].expand(-1, probs.shape[1], -1))  # (Hkv, G, k)
    return float(picked.sum(-1).mean())


def _rel_err(out: Any, ref: Any) -> float:
    return float(((out - ref).norm(dim=-1) / ref.norm(dim=-1)).mean())


def _time(fn: Callable[[], Any], repeats: int, device: Any) -> float:
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    main()
