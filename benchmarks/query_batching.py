"""Micro-batching of query embeddings: single queries embedded from N threads at once (as the
API's thread pool does), with `embedding.query_batch_window_ms` off (0) and on, side by side.

Each level runs `--queries` SQuAD questions through `SentenceEmbedder.encode([q])` from N
threads (each thread takes the next question when its own is done); the two settings
alternate level by level. Columns: queries per second, p50/p95 of one call's latency, and
the mean size of the batches the micro-batcher ran, and the CPU time the process spent per
query (user + system): on a shared machine a process with more busy threads gets a larger
share of the cores, so wall-clock throughput favours many threads; CPU per query does not.
With one thread the batcher must cost nothing (the lone query is embedded at once).
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import apply_threads, base_parser, latency_summary, load_squad, print_table, quiet_environment, write_json


def run_level(embedder: Any, questions: list[str], threads: int) -> dict[str, Any]:
    lock = threading.Lock()
    pending = list(questions)
    seconds: list[float] = []

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                q = pending.pop()
            started = time.perf_counter()
            embedder.encode([q])
            with lock:
                seconds.append(time.perf_counter() - started)

    batcher = embedder.batcher
    before = len(batcher.batches) if batcher is not None else 0
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    batches = batcher.batches[before:] if batcher is not None else []
    return {
        "threads": threads,
        "queries": len(questions),
        "qps": len(questions) / wall,
        "cpu_ms_per_query": 1000 * cpu / len(questions),
        "latency": latency_summary(seconds),
        "mean_batch": statistics.fmean(batches) if batches else 1.0,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--queries", type=int, default=256, help="Queries per level and setting.")
    parser.add_argument("--window-ms", type=float, default=2.0, help="The window of the 'on' setting.")
    parser.add_argument("--backend", default="torch", help="embedding.backend.")
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)

    from quarry.core.settings import EmbeddingSettings
    from quarry.retrieval.embedder import SentenceEmbedder

    questions = [q.text for q in load_squad(args.eval_dir, args.queries, args.seed)[1]]
    off = SentenceEmbedder(EmbeddingSettings(backend=args.backend, query_batch_window_ms=0))
    on = SentenceEmbedder(EmbeddingSettings(backend=args.backend, query_batch_window_ms=args.window_ms))
    on._model = off.model if args.backend == "torch" else None  # one model in memory for both
    for e in (off, on):
        e.encode(questions[:4])
        e.encode([questions[0]])
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for i, level in enumerate(args.levels):
        order = (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off))
        for name, embedder in order:
            results[name].append(run_level(embedder, questions, level))
    rows = []
    for level_no, level in enumerate(args.levels):
        for name in ("off", "on"):
            r = results[name][level_no]
            lat = r["latency"]
            rows.append(
                [
                    level,
                    f"{name} ({0 if name == 'off' else args.window_ms:g} ms)",
                    f"{r['qps']:.1f}",
                    f"{lat['p50_ms']:.1f}",
                    f"{lat['p95_ms']:.1f}",
                    f"{r['mean_batch']:.1f}",
                    f"{r['cpu_ms_per_query']:.1f}",
                ]
            )
    print_table(
        f"Query embeddings from N threads, micro-batching off and on ({args.backend}, {args.queries} queries a level)",
        ["threads", "micro-batching", "queries/s", "p50 ms", "p95 ms", "mean batch", "CPU ms/query"],
        rows,
    )
    write_json("query_batching", args, results)


if __name__ == "__main__":
    main()
