"""InfLLM memory units: peak memory and time against the input length.

A small random-weight Llama (built from a config, nothing downloaded) reads random token
inputs of 16k to 128k tokens through `InfLLMCache` with the paper's settings (units of
128 tokens, 128 sinks, a 4K window, top-16 units, 4 representative keys, chunks of 512),
then decodes `--decode` tokens. Each run is its own process, so peak memory is its own.
For reference, plain full attention (`DynamicCache`, exact attention, prefill in chunks of
4096) runs up to `--full-max` tokens.

Columns: `prefill s` chunked prefill; `ms/token` decode; `device MB` what the cache holds
on the device (window, sinks, partial unit, LRU of units, representative keys; on a CPU
run the "device" is host memory, and the number is the cache's own accounting); `host MB`
memory units offloaded to host memory; `KV MB` full attention's cache; `peak MB` the
process's peak resident memory above its state after loading the model (on CUDA:
`torch.cuda.max_memory_allocated`). InfLLM's device memory should stay flat in the length;
host memory grows with it by design.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import apply_threads, base_parser, print_table, quiet_environment, say, write_json


def parser() -> Any:
    p = base_parser(__doc__ or "")
    p.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768, 65536, 131072])
    p.add_argument("--full-max", type=int, default=32768, help="Longest input for the full-attention reference.")
    p.add_argument("--decode", type=int, default=16, help="Tokens decoded after the prefill.")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--one", nargs=2, metavar=("SYSTEM", "LENGTH"), help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = parser().parse_args()
    quiet_environment()
    apply_threads(args.threads)  # recorded with the results; each run applies it again
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args)))
        return
    rows, results = [], []
    for n in args.lengths:
        for system in ("infllm", "full"):
            if system == "full" and n > args.full_max:
                continue
            say(f"{system} at {n} tokens")
            result = subprocess_run(system, n, args)
            results.append(result)
            rows.append(
                [
                    n,
                    system,
                    f"{result['prefill_s']:.1f}",
                    f"{result['decode_ms']:.1f}",
                    _mb(result.get("device_bytes")),
                    _mb(result.get("host_bytes")),
                    _mb(result.get("kv_bytes")),
                    _mb(result["peak_bytes"]),
                ]
            )
    columns = ["tokens", "system", "prefill s", "ms/token", "device MB", "host MB", "KV MB", "peak MB"]
    print_table(f"InfLLM memory and time vs input length ({args.device}, {args.dtype})", columns, rows)
    write_json("memory_infllm", args, {"rows": results})


def subprocess_run(system: str, n: int, args: Any) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", system, str(n)]
    for flag in ("threads", "seed", "decode", "hidden", "layers", "heads", "device", "dtype"):
        command += [f"--{flag}", str(getattr(args, flag))]
    command += ["--kv-heads", str(args.kv_heads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_one(system: str, n: int, args: Any) -> dict[str, Any]:
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from quarry.memory.config import InfLLMConfig
    from quarry.memory.infllm import InfLLMCache
    from quarry.memory.interface import prepare_model

    apply_threads(args.threads)
    torch.manual_seed(args.seed)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    config = LlamaConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=2 * args.hidden,
        vocab_size=1024,
        max_position_embeddings=max(n + 1024, 8192),
    )
    model = LlamaForCausalLM(config).to(device, dtype).eval()
    ids = torch.randint(0, 1024, (1, n), generator=torch.Generator().manual_seed(args.seed)).to(device)  # (1, N)
    baseline = _rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    result: dict[str, Any] = {"system": system, "tokens": n}
    with torch.inference_mode():
        if system == "infllm":
            prepare_model(model)
            memory = InfLLMConfig()
            cache: Any = InfLLMCache.for_model(model, memory)
            chunk = memory.chunk_size
        else:
            cache = DynamicCache(config=model.config)
            chunk = 4096
        started = time.perf_counter()
        for a in range(0, n, chunk):
            out = model(input_ids=ids[:, a : a + chunk], past_key_values=cache, use_cache=True, logits_to_keep=1)
        _sync(device)
        result["prefill_s"] = time.perf_counter() - started
        token = out.logits[:, -1:].argmax(-1)  # (1, 1)
        started = time.perf_counter()
        for _ in range(args.decode):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
        _sync(device)
        result["decode_ms"] = (time.perf_counter() - started) / args.decode * 1000
    if system == "infllm":
        stats = cache.stats()
        result.update(
            device_bytes=stats.device_bytes,
            host_bytes=stats.host_bytes,
            blocks=stats.blocks,
            cache_hits=stats.cache_hits,
            cache_misses=stats.cache_misses,
        )
    else:
        result["kv_bytes"] = sum(
            layer.keys.numel() * layer.keys.element_size() * 2 for layer in cache.layers if layer.keys is not None
        )
    if device.type == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated() - baseline
    else:
        result["peak_bytes"] = _peak_rss_bytes() - baseline
    return result


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


if __name__ == "__main__":
    main()
