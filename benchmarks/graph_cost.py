"""What the passage graph and the stored sentences cost: their share of ingestion time on real
paragraphs, and search latency in `graph` mode next to `hybrid` at a large synthetic size.

Part 1 ingests real paragraphs (the HotpotQA and MuSiQue pools in the shared eval data) with
the real embedding model, twice: with `ingest.sentence_vectors` on (the default) and off.
Inside each run it times the two steps the graph and the sentences add, by wrapping the
functions that do them: the graph's entity extraction and rows (`graph_store.write_graph`,
called in each batch's write transaction) and the sentences' splitting and embedding
(`sentence_store.embed_sentences`). It also times loading the graph into its sparse matrix
(the first `graph` search of a collection).

Part 2 writes a synthetic collection (search_latency.py's generator, plus capitalised
multi-word names per topic so the graph has entities to link) straight into the store, then
times `Library.search` in `hybrid` and `graph` mode, query by query, interleaved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    Stopwatch,
    apply_threads,
    base_parser,
    latency_summary,
    print_table,
    quiet_environment,
    say,
    temp_data_dir,
    write_json,
)

TARGET_GRAPH_SHARE = 0.15
TARGET_GRAPH_P95_MS = 60.0


class Timed:
    """Wraps a module's function and sums the seconds spent in it."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name, self.seconds, self.calls = module, name, 0.0, 0
        self.original = getattr(module, name)

    def __enter__(self) -> Timed:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.module, self.name, self.original)


def real_paragraphs(eval_dir: Path, limit: int) -> list[tuple[str, str, str]]:
    """(id, title, text) of the HotpotQA pool and the MuSiQue pool, deduplicated."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str, str]] = []
    corpus = json.loads((eval_dir / "hotpotqa" / "hotpotqa_train_corpus.json").read_text())
    for title, sentences in corpus.items():
        out.append((f"h{len(out)}", title, " ".join(sentences)))
    with (eval_dir / "musique" / "musique_dev.jsonl").open() as f:
        for line in f:
            for p in json.loads(line)["paragraphs"]:
                key = (p["title"], p["paragraph_text"])
                if key not in seen:
                    seen.add(key)
                    out.append((f"m{len(out)}", p["title"], p["paragraph_text"]))
    return out[:limit] if limit else out


def ingest_cost(paragraphs: list[tuple[str, str, str]], embedder: Any, sentences: bool) -> dict[str, float]:
    from quarry.core.settings import Settings
    from quarry.retrieval import Library, graph_store, ingest, text_document

    docs = [text_document(text, name=pid, title=title) for pid, title, text in paragraphs]
    with temp_data_dir("graph-cost") as data_dir:
        library = Library(
            Settings(storage={"data_dir": data_dir}, ingest={"sentence_vectors": sentences}), embedder=embedder
        )
        with (
            Timed(graph_store, "write_graph") as graph,
            Timed(ingest, "embed_sentences") as sent,
            Stopwatch() as total,
        ):
            report = library.ingest_documents("bench", docs)
        with Stopwatch() as load:
            library.graph("bench")
        library.close()
    return {
        "documents": len(docs),
        "chunks": report.chunks,
        "ingest_s": total.seconds,
        "graph_write_s": graph.seconds,
        "sentences_s": sent.seconds,
        "graph_load_s": load.seconds,
    }


def named_text(corpus: Any, names: list[list[str]], topic: int, rng: np.random.Generator) -> str:
    """A synthetic chunk with two to four of its topic's names (and one of another's) in it."""
    words = corpus.text(topic, int(rng.integers(60, 110)), topical=0.25).split()
    own = names[topic]
    for _ in range(int(rng.integers(2, 5))):
        words.insert(int(rng.integers(len(words))), own[int(rng.integers(len(own)))])
    other = names[int(rng.integers(len(names)))]
    words.insert(int(rng.integers(len(words))), other[int(rng.integers(len(other)))])
    return " ".join(words) + "."


def write_named_collection(library: Any, corpus: Any, names: list[list[str]], chunks: int, per_doc: int) -> None:
    from quarry.core.types import Chunk
    from quarry.retrieval import text_document
    from quarry.retrieval.storage import PreparedDocument

    collection_id = library.create_collection("bench").id
    rng = corpus.rng
    batch: list[Any] = []
    written = doc_no = 0
    while written < chunks:
        topic = int(rng.integers(len(corpus.centres)))
        n = min(per_doc, chunks - written)
        title = names[topic][0]
        texts = [named_text(corpus, names, topic, rng) for _ in range(n)]
        doc = text_document("\n\n".join(texts), name=f"doc-{doc_no:06d}.txt", title=title)
        parts, start = [], 0
        for i, t in enumerate(texts):
            parts.append(
                Chunk(ordinal=i, text=t, start_char=start, end_char=start + len(t), token_count=len(t.split()))
            )
            start += len(t) + 2
        batch.append(PreparedDocument(doc, parts, corpus.vectors(topic, n)))
        written += n
        doc_no += 1
        if len(batch) == 200 or written == chunks:
            library.store.write_documents(collection_id, batch)
            batch = []
            if doc_no % 2000 < 200:
                say(f"  {written:,} chunks written")


def graph_search(size: int, args: Any, embedder: Any) -> dict[str, Any]:
    from search_latency import SyntheticCorpus

    from quarry.core.settings import Settings
    from quarry.retrieval import Library

    essays = "\n".join(
        p.read_text(errors="ignore") for p in sorted((args.eval_dir / "needle" / "essays").glob("*.txt"))
    )
    corpus = SyntheticCorpus.build(essays, args.topics, embedder.dimension, args.seed)
    rng = corpus.rng
    vocab = [w for w in corpus.words[:4000] if len(w) > 3]
    names = [
        [" ".join(str(vocab[int(rng.integers(len(vocab)))]).capitalize() for _ in range(2)) for _ in range(8)]
        for _ in range(args.topics)
    ]
    queries = []
    for _ in range(args.queries + args.warmup):
        topic = int(rng.integers(args.topics))
        queries.append(f"{corpus.query()} {names[topic][int(rng.integers(8))]}")
    with temp_data_dir(f"graph-{size}") as data_dir:
        library = Library(Settings(storage={"data_dir": data_dir}), embedder=embedder)
        with Stopwatch() as write:
            write_named_collection(library, corpus, names, size, args.chunks_per_doc)
        say(f"{size:,}: rows written (graph included) in {write.seconds:.1f}s; building indexes and the graph")
        with Stopwatch() as index:
            library.search("bench", queries[0], k=args.k, mode="hybrid")
        with Stopwatch() as graph_load:
            graph = library.graph("bench")
        times: dict[str, list[float]] = {"hybrid": [], "graph": []}
        for i, q in enumerate(queries):
            for mode in times:
                with Stopwatch() as watch:
                    library.search("bench", q, k=args.k, mode=mode)
                if i >= args.warmup:
                    times[mode].append(watch.seconds)
        shape = graph.matrix.shape if hasattr(graph, "matrix") else None
        library.close()
    return {
        "chunks": size,
        "write_s": write.seconds,
        "index_build_s": index.seconds,
        "graph_load_s": graph_load.seconds,
        "graph_shape": list(shape) if shape else None,
        "latency": {mode: latency_summary(t) for mode, t in times.items()},
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=0, help="Real paragraphs to ingest (0: all, ~5,400).")
    parser.add_argument("--size", type=int, default=100_000, help="Chunks of the synthetic collection (0: skip).")
    parser.add_argument("--queries", type=int, default=100, help="Timed queries in each mode.")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunks-per-doc", type=int, default=10)
    parser.add_argument("--topics", type=int, default=200)
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)

    from quarry.core.settings import Settings
    from quarry.retrieval.embedder import SentenceEmbedder

    embedder = SentenceEmbedder(Settings().embedding)
    embedder.encode(["warm-up"])
    results: dict[str, Any] = {}

    paragraphs = real_paragraphs(args.eval_dir, args.paragraphs)
    say(f"ingesting {len(paragraphs):,} real paragraphs, sentence vectors off then on")
    off = ingest_cost(paragraphs, embedder, sentences=False)
    on = ingest_cost(paragraphs, embedder, sentences=True)
    results["ingest"] = {"sentence_vectors_off": off, "sentence_vectors_on": on}
    rows = []
    for label, r in (("sentence vectors off", off), ("sentence vectors on (default)", on)):
        rows.append(
            [
                label,
                f"{r['chunks']:,}",
                f"{r['ingest_s']:.1f}",
                f"{r['graph_write_s']:.1f} ({r['graph_write_s'] / r['ingest_s']:.0%})",
                f"{r['sentences_s']:.1f} ({r['sentences_s'] / r['ingest_s']:.0%})",
                f"{r['graph_load_s']:.2f}",
            ]
        )
    print_table(
        "Ingestion of real paragraphs (HotpotQA + MuSiQue pools): the graph's and the sentences' share",
        ["run", "chunks", "ingest s", "graph rows s (share)", "sentences s (share)", "graph load s"],
        rows,
    )
    share = on["graph_write_s"] / max(on["ingest_s"] - on["graph_write_s"], 1e-9)
    print(
        f"  the graph adds {share:.1%} to ingestion without it (target <= {TARGET_GRAPH_SHARE:.0%}): "
        f"{'met' if share <= TARGET_GRAPH_SHARE else 'NOT met'}"
    )
    results["graph_adds"] = share

    if args.size:
        r = graph_search(args.size, args, embedder)
        results["search"] = r
        print_table(
            f"Library.search at {args.size:,} synthetic chunks, k={args.k}, {args.queries} queries "
            f"(graph loaded in {r['graph_load_s']:.1f}s, indexes built in {r['index_build_s']:.1f}s)",
            ["mode", "p50 ms", "p95 ms", "mean ms"],
            [
                [mode, f"{lat['p50_ms']:.1f}", f"{lat['p95_ms']:.1f}", f"{lat['mean_ms']:.1f}"]
                for mode, lat in r["latency"].items()
            ],
        )
        p95 = r["latency"]["graph"]["p95_ms"]
        print(
            f"  graph p95 at {args.size:,} chunks: {p95:.1f} ms (target <= {TARGET_GRAPH_P95_MS:.0f} ms): "
            f"{'met' if p95 <= TARGET_GRAPH_P95_MS else 'NOT met'}"
        )
    write_json("graph_cost", args, results)


if __name__ == "__main__":
    main()
