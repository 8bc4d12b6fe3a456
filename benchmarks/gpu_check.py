"""One short check of a GPU machine (CUDA, torch, transformers, sentence-transformers; no
internet, no downloaded weights), in well under 8 minutes, written to one JSON:

1. memory layer equivalences on the device, in float32 and bfloat16, on tiny random models
   built from a config (as tests/memory does): InfLLM with every unit selected equals full
   attention (Llama and Qwen2 logits), InfLLM greedy generation equals plain generation,
   Squeezed Attention keeping every key equals exact attention;
2. decode attention of Squeezed Attention and InfLLM's unit selection against exact SDPA at
   long contexts (32k-128k keys on CUDA, Llama-3-8B layer shape, bfloat16): error, attention
   mass recalled, ms/token (benchmarks/memory_attention.py's measurement, reused);
3. embedding throughput of the bundled model on the device (texts/s at a few batch sizes).

    .venv/bin/python benchmarks/gpu_check.py                 # CUDA, full sizes
    .venv/bin/python benchmarks/gpu_check.py --device cpu    # here: small sizes, same checks

`--device cpu` shrinks every size (contexts of 4k-8k keys, fewer texts) so the script runs
on a CPU machine in about a minute; `--small` does the same on any device. The JSON names the
device (`torch.cuda.get_device_name`), the versions, every check's figures and whether it
passed; the exit status is 1 when an equivalence check failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, print_table, quiet_environment, say, write_json

# float32 on the device: differences come from summation order only (TF32 is switched off);
# bfloat16 keeps 8 bits of mantissa, so logits agree to a few per cent of their range
TOLERANCE = {"float32": 2e-4, "bfloat16": 6e-2}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu.")
    parser.add_argument("--small", action="store_true", help="CPU sizes on any device (implied by --device cpu).")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="Decode contexts (keys).")
    parser.add_argument("--texts", type=int, default=None, help="Texts embedded per batch size.")
    parser.add_argument("--skip", default="", help="Comma-separated parts to skip: memory, attention, embedding.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default).")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: results/gpu_check.json).")
    args = parser.parse_args()
    args.small = args.small or args.device == "cpu"
    if args.lengths is None:
        args.lengths = [4096, 8192] if args.small else [32768, 65536, 131072]
    if args.texts is None:
        args.texts = 128 if args.small else 4096
    args.output = args.output or RESULTS_DIR / "gpu_check.json"
    return args


def device_info(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=torch.cuda.get_device_name(device),
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            bf16=torch.cuda.is_bf16_supported(),
        )
    else:
        import platform

        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info


# 1. equivalences ---------------------------------------------------------------------------------
def tiny_model(family: str, device: Any, dtype: Any, seed: int = 0) -> Any:
    """tests/memory's tiny model: 2 layers, 4 query heads over 2 KV heads, random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    shape = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 128,
        "max_position_embeddings": 8192,
    }
    model = LlamaForCausalLM(LlamaConfig(**shape)) if family == "llama" else Qwen2ForCausalLM(Qwen2Config(**shape))
    return model.eval().to(device=device, dtype=dtype)


def _ids(length: int, device: Any, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 128, (1, length), generator=g).to(device)  # (1, T)


def _relative(a: Any, b: Any) -> float:
    """max |a - b| over max |b|, in float32."""
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))


def infllm_full_attention(family: str, device: Any, dtype_name: str) -> dict[str, Any]:
    import torch

    from quarry.memory.config import InfLLMConfig
    from quarry.memory.infllm import InfLLMCache
    from quarry.memory.interface import prepare_model

    dtype = getattr(torch, dtype_name)
    model = tiny_model(family, device, dtype)
    ids = _ids(900, device, seed=0)
    with torch.inference_mode():
        full = model(ids).logits  # (1, 900, V), sdpa
    prepare_model(model)
    config = InfLLMConfig(block_size=16, sink_tokens=8, window=64, top_k=1000, chunk_size=32, positions="exact")
    cache = InfLLMCache.for_model(model, config)
    with torch.inference_mode():
        got = torch.cat(
            [model(ids[:, a : a + 50], past_key_values=cache, use_cache=True).logits for a in range(0, 900, 50)], dim=1
        )  # (1, 900, V)
    err = _relative(got, full)
    agree = float((got.argmax(-1) == full.argmax(-1)).float().mean())
    return {"relative_error": err, "argmax_agreement": agree, "passed": err <= TOLERANCE[dtype_name]}


def infllm_generate(device: Any, dtype_name: str) -> dict[str, Any]:
    import torch

    from quarry.memory.config import InfLLMConfig
    from quarry.memory.infllm import InfLLMCache
    from quarry.memory.interface import prepare_model

    model = tiny_model("llama", device, getattr(torch, dtype_name))
    ids = _ids(400, device, seed=3)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        plain = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    prepare_model(model)
    config = InfLLMConfig(block_size=16, sink_tokens=8, window=48, top_k=1000, chunk_size=32, positions="exact")
    with torch.inference_mode():
        got = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=8,
            do_sample=False,
            past_key_values=InfLLMCache.for_model(model, config),
            prefill_chunk_size=config.chunk_size,
        )
    same = float((got[0, 400:] == plain[0, 400:]).float().mean())
    # bf16 rounding may flip a near-tie between two tokens; float32 must agree exactly
    return {"token_agreement": same, "passed": same == 1.0 or (dtype_name == "bfloat16" and same >= 0.75)}


def squeezed_keep_all(device: Any, dtype_name: str) -> dict[str, Any]:
    import torch

    from quarry.memory.attention import attend
    from quarry.memory.clustering import build_index
    from quarry.memory.config import SqueezedConfig
    from quarry.memory.squeezed import Thresholds, squeezed_attention

    hkv, group, d, n = 2, 2, 32, 3000
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    centre = torch.nn.functional.normalize(torch.randn(hkv, 24, d, generator=g), dim=-1) * 3.0
    which = torch.randint(0, 24, (hkv, n), generator=g)
    keys = centre.gather(1, which[..., None].expand(-1, -1, d)) + 0.6 * torch.randn(hkv, n, d, generator=g)
    values = torch.randn(hkv, n, d, generator=g)
    q = torch.randn(1, hkv * group, 5, d, generator=g)
    keys, values, q = (t.to(device, dtype) for t in (keys, values, q))
    scale = d**-0.5
    rows = {}
    for hierarchical in (False, True):
        index = build_index(
            keys, values, SqueezedConfig(cluster_share=0.03, coarse_share=0.005, hierarchical=hierarchical)
        )
        part = squeezed_attention(q, index, Thresholds.keep_all(), scale, min_clusters=0).part
        exact = attend(q, keys[None], values[None], scale)
        rows["hierarchical" if hierarchical else "flat"] = _relative(part.out, exact.out)
    worst = max(rows.values())
    return {"relative_error": rows, "passed": worst <= TOLERANCE[dtype_name]}


def memory_checks(device: Any) -> list[dict[str, Any]]:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 must mean float32
    torch.backends.cudnn.allow_tf32 = False
    out = []
    for dtype_name in ("float32", "bfloat16"):
        checks: dict[str, Any] = {
            "infllm-all-units=full (llama)": lambda dt: infllm_full_attention("llama", device, dt),
            "infllm-all-units=full (qwen2)": lambda dt: infllm_full_attention("qwen2", device, dt),
            "infllm-generate=plain": lambda dt: infllm_generate(device, dt),
            "squeezed-keep-all=exact": lambda dt: squeezed_keep_all(device, dt),
        }
        for name, check in checks.items():
            started = time.perf_counter()
            try:
                result = check(dtype_name)
            except Exception as exc:  # noqa: BLE001  (reported as a failed check, then the next runs)
                result = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
            result.update(check=name, dtype=dtype_name, seconds=round(time.perf_counter() - started, 2))
            say(f"{name} {dtype_name}: {'ok' if result['passed'] else 'FAILED'}")
            out.append(result)
    return out


# 2. decode attention -----------------------------------------------------------------------------
def attention_rows(device: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from memory_attention import run_length

    small = args.small
    options = argparse.Namespace(
        kv_heads=2 if small else 8,
        group=4,
        head_dim=64 if small else 128,
        budget=0.1,
        cluster_share=0.02,
        coarse_share=0.002,
        steps=4 if small else 12,
        repeats=2 if small else 3,
        device=str(device),
        dtype="bfloat16",
        seed=args.seed,
    )
    rows = []
    for n in args.lengths:
        say(f"decode attention over {n} keys ({options.dtype})")
        rows.extend({**row, "dtype": options.dtype} for row in run_length(n, options))
    return rows


# 3. embedding throughput -------------------------------------------------------------------------
def embedding_rows(device: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    import random

    from quarry.core.settings import EmbeddingSettings
    from quarry.retrieval.embedder import SentenceEmbedder

    words = "river stone garden window market silver winter letter engine harbor candle forest".split()
    rng = random.Random(args.seed)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(60, 160))) for _ in range(args.texts)]
    kind = "cuda" if device.type == "cuda" else "cpu"
    embedder = SentenceEmbedder(EmbeddingSettings(device=kind, query_batch_window_ms=0))
    embedder.encode(texts[:8])  # load and warm up
    rows = []
    for batch in (32, 128) if args.small else (64, 256, 1024):
        times = []
        for _ in range(2):
            started = time.perf_counter()
            embedder.encode(texts, batch_size=batch)
            _sync(device)
            times.append(time.perf_counter() - started)
        best = min(times)
        rows.append({"batch_size": batch, "texts": len(texts), "seconds": best, "texts_per_s": len(texts) / best})
        say(f"embedding, batch {batch}: {len(texts) / best:,.0f} texts/s")
    return rows


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse()
    quiet_environment()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu")
    device = torch.device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    started = time.perf_counter()
    results: dict[str, Any] = {"device": device_info(device), "small": args.small, "seconds": {}}
    say(f"device: {results['device'].get('name')} ({device})")
    for part, run in (
        ("memory", lambda: memory_checks(device)),
        ("attention", lambda: attention_rows(device, args)),
        ("embedding", lambda: embedding_rows(device, args)),
    ):
        if part in skip:
            continue
        t = time.perf_counter()
        results[part] = run()
        results["seconds"][part] = round(time.perf_counter() - t, 1)
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    checks = results.get("memory", [])
    results["passed"] = all(c["passed"] for c in checks)

    if checks:
        print_table(
            f"Memory layer equivalences on {device}",
            ["check", "dtype", "passed", "figure"],
            [[c["check"], c["dtype"], str(c["passed"]), _figure(c)] for c in checks],
        )
    if results.get("attention"):
        print_table(
            f"Decode attention on {device} (bfloat16, budget 10%)",
            ["context", "system", "out err", "mass", "needles", "keys", "ms/token", "speedup"],
            [
                [r["context"], r["system"], r["out_err"], r["mass"], r["needles"], r["keys"], r["ms"], r["speedup"]]
                for r in results["attention"]
            ],
        )
    if results.get("embedding"):
        print_table(
            f"Embedding throughput on {device}",
            ["batch", "texts", "s", "texts/s"],
            [[r["batch_size"], r["texts"], r["seconds"], f"{r['texts_per_s']:,.0f}"] for r in results["embedding"]],
        )
    print(f"  total {results['seconds']['total']:.0f}s; equivalences {'passed' if results['passed'] else 'FAILED'}")
    write_json("gpu_check", args, results)
    if not results["passed"]:
        sys.exit(1)


def _figure(check: dict[str, Any]) -> str:
    if "error" in check:
        return str(check["error"])[:60]
    value = check.get("relative_error", check.get("token_agreement"))
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.2e}" for k, v in value.items())
    return f"{value:.2e}" if "relative_error" in check else f"{value:.2f} of tokens"


if __name__ == "__main__":
    main()
