"""Search latency (p50/p95, query embedding included) through `Library.search` at growing
collection sizes, for hybrid, dense-only and BM25-only search.

The corpus is synthetic: chunk texts drawn with a fixed seed from the word frequencies of
the needle essays, each document leaning on one topic's words; chunk vectors are random
normalised vectors clustered around one centre per topic (embedding 100k chunks on a CPU
would take hours). Rows are written with `Store.write_documents`; the Library then builds
its FAISS and BM25 indexes itself when the collection is first searched (reconcile), and
every query is embedded by the real model.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    ReplayEmbedder,
    Stopwatch,
    apply_threads,
    base_parser,
    latency_summary,
    load_essays,
    print_table,
    quiet_environment,
    say,
    temp_data_dir,
    write_json,
)

TARGET_P95_MS = 50.0
MODES = ("hybrid", "dense", "sparse")
ROWS = (*MODES, "embed only", "hybrid, no model")


@dataclass
class SyntheticCorpus:
    """Word and vector generators: a global unigram distribution plus per-topic words and
    vector centres."""

    words: np.ndarray  # (V,) str
    cdf: np.ndarray  # (V,) cumulative word probabilities
    topic_words: np.ndarray  # (T, W) word indices
    centres: np.ndarray  # (T, dim) unit vectors
    rng: np.random.Generator

    @classmethod
    def build(cls, essays_text: str, topics: int, dim: int, seed: int) -> SyntheticCorpus:
        counts = Counter(w for w in re.findall(r"[a-z]+", essays_text.lower()) if len(w) > 1)
        words, freq = zip(*counts.most_common(), strict=True)
        probs = np.asarray(freq, dtype=np.float64)
        rng = np.random.default_rng(seed)
        # topic words come from the less frequent half of the vocabulary, so they discriminate
        tail = np.arange(len(words) // 20, len(words))
        topic_words = np.stack([rng.choice(tail, size=40, replace=False) for _ in range(topics)])
        centres = rng.standard_normal((topics, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        return cls(np.asarray(words), np.cumsum(probs / probs.sum()), topic_words, centres, rng)

    def text(self, topic: int, n_words: int, topical: float) -> str:
        general = np.searchsorted(self.cdf, self.rng.random(n_words), side="right").clip(0, len(self.words) - 1)
        pick = self.rng.random(n_words) < topical
        general[pick] = self.rng.choice(self.topic_words[topic], size=int(pick.sum()))
        return " ".join(self.words[general])

    def vectors(self, topic: int, n: int, spread: float = 0.08) -> np.ndarray:
        noise = self.rng.standard_normal((n, self.centres.shape[1])).astype(np.float32)
        v = self.centres[topic] + spread * noise  # (n, dim): cosine to the centre about 0.55
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def query(self) -> str:
        return self.text(int(self.rng.integers(len(self.centres))), int(self.rng.integers(3, 9)), topical=0.6)


def write_collection(
    library: Any, name: str, corpus: SyntheticCorpus, chunks: int, per_doc: int, keep: list[Any] | None = None
) -> None:
    """Write `chunks` synthetic chunks (`per_doc` per document) straight into the store;
    `keep` collects (chunk ids, vectors) of every batch (for the exact search of the recall check)."""
    from quarry.core.types import Chunk
    from quarry.retrieval import text_document
    from quarry.retrieval.storage import PreparedDocument

    collection_id = library.create_collection(name).id
    batch: list[PreparedDocument] = []
    written = 0
    doc_no = 0
    while written < chunks:
        topic = int(corpus.rng.integers(len(corpus.centres)))
        n = min(per_doc, chunks - written)
        title = f"Synthetic {doc_no:06d} {corpus.words[corpus.topic_words[topic][0]]}"
        texts = [corpus.text(topic, int(corpus.rng.integers(60, 110)), topical=0.25) for _ in range(n)]
        doc = text_document("\n\n".join(texts), name=f"doc-{doc_no:06d}.txt", title=title)
        parts, start = [], 0
        for i, t in enumerate(texts):
            parts.append(
                Chunk(
                    ordinal=i,
                    text=t,
                    start_char=start,
                    end_char=start + len(t),
                    token_count=len(t.split()),
                    heading=title,
                )
            )
            start += len(t) + 2
        batch.append(PreparedDocument(doc, parts, corpus.vectors(topic, n)))
        written += n
        doc_no += 1
        if len(batch) == 200 or written == chunks:
            results = library.store.write_documents(collection_id, batch)
            if keep is not None:
                ids = np.concatenate([np.asarray(r.chunk_ids, dtype=np.int64) for r in results])
                keep.append((ids, np.concatenate([p.embeddings for p in batch])))
            batch = []


def measure(library: Any, replay: Any, name: str, queries: list[str], k: int) -> dict[str, list[float]]:
    """Seconds per query in each mode, for the query embedding alone, and for hybrid search
    with the model call replaced by a lookup (`replay`); interleaved query by query."""
    times: dict[str, list[float]] = {m: [] for m in ROWS}
    for q in queries:
        for mode in MODES:
            with Stopwatch() as watch:
                library.search(name, q, k=k, mode=mode)
            times[mode].append(watch.seconds)
        with Stopwatch() as watch:
            library.embedder.encode([q])
        times["embed only"].append(watch.seconds)
        with Stopwatch() as watch:
            replay.search(name, q, k=k, mode="hybrid")
        times["hybrid, no model"].append(watch.seconds)
    return times


def bench_size(size: int, corpus: SyntheticCorpus, embedder: Any, args: Any) -> dict[str, Any]:
    from quarry.core.settings import Settings
    from quarry.retrieval import Library

    warmup = [corpus.query() for _ in range(args.warmup)]
    queries = [corpus.query() for _ in range(args.queries)]
    vectors = dict(zip(warmup + queries, embedder.encode(warmup + queries), strict=True))
    with temp_data_dir(f"latency-{size}") as data_dir:
        index_settings = {
            k: v
            for k, v in {
                "approximate_threshold": args.approximate_threshold,
                "large_threshold": args.large_threshold,
                "ivf_nprobe": args.nprobe,
                "large_nprobe": args.large_nprobe,
            }.items()
            if v is not None
        }
        settings = Settings(storage={"data_dir": data_dir}, index=index_settings)
        library = Library(settings, embedder=embedder)
        kept: list[Any] | None = [] if args.recall_queries else None
        with Stopwatch() as write:
            write_collection(library, "bench", corpus, size, args.chunks_per_doc, kept)
        say(f"{size}: rows written in {write.seconds:.1f}s; building indexes")
        with Stopwatch() as build:  # the first search opens the collection and reconciles
            library.search("bench", warmup[0], k=args.k)
        info = next(c for c in library.collections() if c.name == "bench")
        manifest = json.loads((Path(data_dir) / "indexes" / str(info.id) / "manifest.json").read_text())
        say(
            f"{size}: {info.index_kind} index, {len(manifest['segments'])} BM25 segment(s), "
            f"built in {build.seconds:.1f}s"
        )
        index = library._index(info.id)
        recall = approximate_recall(index.dense, kept, corpus, args) if kept is not None else None
        kept = None  # the copy of the vectors goes before the timing
        memory = resident_memory(index, Path(data_dir) / "indexes" / str(info.id), manifest)
        say(f"{size}: " + ", ".join(f"{k} {v}" for k, v in memory.items()))
        replay = Library(settings, embedder=ReplayEmbedder(embedder, vectors))
        measure(library, replay, "bench", warmup, args.k)
        times = measure(library, replay, "bench", queries, args.k)
        replay.close()
        library.close()
    return {
        "chunks": info.chunk_count,
        "documents": info.document_count,
        "index_kind": info.index_kind,
        "bm25_segments": len(manifest["segments"]),
        "write_seconds": write.seconds,
        "index_build_seconds": build.seconds,
        "latency": {mode: latency_summary(t) for mode, t in times.items()},
        "approximate_recall_at_10": recall,
        "memory": memory,
    }


def approximate_recall(dense: Any, kept: list[Any], corpus: SyntheticCorpus, args: Any) -> float | None:
    """Mean share of the exact top 10 that the collection's index returns, for query vectors
    drawn like the chunk vectors (near a topic centre); None for an exact (flat) index."""
    if dense.kind == "flat":
        return None
    from quarry.retrieval.dense import DenseIndex

    exact = DenseIndex(dense.dimension, approximate_threshold=10**12)
    for ids, vectors in kept:
        exact.add(ids, vectors)
    kept.clear()
    topics = corpus.rng.integers(len(corpus.centres), size=args.recall_queries)
    found = []
    for t in topics:
        q = corpus.vectors(int(t), 1)[0]
        want = set(exact.search(q, 10)[0].tolist())
        found.append(len(want & set(dense.search(q, 10)[0].tolist())) / 10)
    recall = float(np.mean(found))
    say(f"{dense.kind} recall@10 against exact search: {recall:.3f} ({args.recall_queries} queries)")
    return recall


def resident_memory(index: Any, directory: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """The process's resident memory now and at its peak, and the index files' sizes."""
    import resource

    def mib(n: float) -> str:
        return f"{n / 2**20:,.0f} MiB"

    rss = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    bm25 = sum(f.stat().st_size for f in (directory / "bm25").rglob("*") if f.is_file())
    return {
        "process_rss": mib(rss),
        "process_peak_rss": mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "faiss_file": mib((directory / manifest["dense"]).stat().st_size),
        "bm25_files": mib(bm25),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1_000, 10_000, 100_000],
        help="Comma-separated collection sizes in chunks.",
    )
    parser.add_argument("--queries", type=int, default=100, help="Timed queries per size (each run in every mode).")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed queries first.")
    parser.add_argument("--k", type=int, default=10, help="Hits per search.")
    parser.add_argument("--chunks-per-doc", type=int, default=10, help="Chunks of each synthetic document.")
    parser.add_argument("--topics", type=int, default=200, help="Topics of the synthetic corpus.")
    parser.add_argument("--approximate-threshold", type=int, default=None, help="index.approximate_threshold.")
    parser.add_argument("--large-threshold", type=int, default=None, help="index.large_threshold (ivf-sq8).")
    parser.add_argument("--nprobe", type=int, default=None, help="index.ivf_nprobe.")
    parser.add_argument("--large-nprobe", type=int, default=None, help="index.large_nprobe.")
    parser.add_argument(
        "--recall-queries",
        type=int,
        default=200,
        help="Query vectors for the approximate index's recall@10 against exact search (0: skip).",
    )
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)

    from quarry.core.settings import Settings
    from quarry.retrieval.embedder import SentenceEmbedder

    embedder = SentenceEmbedder(Settings().embedding)
    embedder.encode(["warm-up"])
    essays = "\n".join(p.text for p in load_essays(args.eval_dir))
    corpus = SyntheticCorpus.build(essays, args.topics, embedder.dimension, args.seed)

    results: dict[str, Any] = {}
    builds, rows = [], []
    for size in args.sizes:
        r = bench_size(size, corpus, embedder, args)
        results[str(size)] = r
        builds.append(
            [
                f"{r['chunks']:,}",
                r["documents"],
                r["index_kind"],
                r["bm25_segments"],
                f"{r['write_seconds']:.1f}",
                f"{r['index_build_seconds']:.1f}",
                "exact" if r["approximate_recall_at_10"] is None else f"{r['approximate_recall_at_10']:.3f}",
                r["memory"]["process_rss"],
                r["memory"]["faiss_file"],
                r["memory"]["bm25_files"],
            ]
        )
        for mode in ROWS:
            lat = r["latency"][mode]
            rows.append(
                [
                    f"{r['chunks']:,}",
                    r["index_kind"],
                    "bm25" if mode == "sparse" else mode,
                    f"{lat['p50_ms']:.1f}",
                    f"{lat['p95_ms']:.1f}",
                    f"{lat['mean_ms']:.1f}",
                ]
            )
    print_table(
        "Synthetic collections",
        [
            "chunks",
            "documents",
            "dense index",
            "bm25 segments",
            "rows written s",
            "index build s",
            "recall@10 vs exact",
            "process RSS",
            "FAISS file",
            "BM25 files",
        ],
        builds,
    )
    print_table(
        f"Library.search latency in ms, k={args.k}, {args.queries} queries (query embedding included "
        "except in 'hybrid, no model')",
        ["chunks", "index", "mode", "p50", "p95", "mean"],
        rows,
    )
    largest = results[str(max(args.sizes))]
    p95 = largest["latency"]["hybrid"]["p95_ms"]
    met = p95 < TARGET_P95_MS
    print(
        f"  hybrid p95 at {largest['chunks']:,} chunks: {p95:.1f} ms (target < {TARGET_P95_MS:.0f} ms): "
        f"{'met' if met else 'NOT met'}"
    )
    write_json("search_latency", args, {"sizes": results, "target_p95_ms": TARGET_P95_MS, "target_met": met})


if __name__ == "__main__":
    main()
