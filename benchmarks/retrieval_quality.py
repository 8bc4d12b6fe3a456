"""Retrieval quality on HotpotQA and SQuAD: Quarry dense, BM25 and hybrid against
llama-index's default vector retriever with the same embedding model.

Judged at document level: chunk hits are mapped back to their passage, repeats dropped,
and recall@k / MRR computed over the first distinct passages.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import (
    Passage,
    Question,
    Stopwatch,
    apply_threads,
    base_parser,
    load_hotpotqa,
    load_squad,
    model_path,
    print_table,
    quiet_environment,
    say,
    temp_data_dir,
    write_json,
)

from quarry.evals.metrics import all_gold_at_k, distinct, recall_at_k, reciprocal_rank

KS = (1, 2, 5, 10)
Ranker = Callable[[str], list[str]]  # question -> passage ids, best first


def score_one(ranked: Sequence[str], gold: frozenset[str]) -> dict[str, float]:
    """recall@k (fraction of gold found), all@k (every gold found) and reciprocal rank."""
    entries = sorted(gold)
    matches = [frozenset(i for i, g in enumerate(entries) if g == key) for key in ranked]
    out: dict[str, float] = {}
    for k in KS:
        out[f"recall@{k}"] = recall_at_k(matches, len(entries), k)
        out[f"all@{k}"] = all_gold_at_k(matches, len(entries), k)
    out["mrr"] = reciprocal_rank(matches)
    return out


def mean_scores(per_question: list[dict[str, float]]) -> dict[str, float]:
    return {m: sum(q[m] for q in per_question) / len(per_question) for m in per_question[0]}


# systems -------------------------------------------------------------------------------------
def quarry_rankers(
    passages: Sequence[Passage], data_dir: Path, fetch: int, depth: int
) -> tuple[dict[str, Ranker], float, Any]:
    """Ingest into a fresh Library; one ranker per search mode. Returns (rankers, seconds, library)."""
    from quarry.core.settings import Settings
    from quarry.retrieval import Library, text_document

    library = Library(Settings(storage={"data_dir": data_dir}))
    library.embedder.encode(["warm-up"])  # model load is not ingestion
    docs = [text_document(p.text, name=p.id, title=p.title) for p in passages]
    passage_of = {doc.source: p.id for doc, p in zip(docs, passages, strict=True)}
    if len(passage_of) != len(passages):
        raise SystemExit("two passages map to one Quarry source name; ids must be unique")
    with Stopwatch() as watch:
        report = library.ingest_documents("bench", docs)
    if report.failed:
        raise SystemExit(f"Quarry failed to ingest {len(report.failed)} passages: {report.failed[:3]}")
    say(f"quarry: {len(docs)} passages, {report.chunks} chunks in {watch.seconds:.1f}s")

    def ranker(mode: str) -> Ranker:
        def rank(question: str) -> list[str]:
            hits = library.search("bench", question, k=fetch, mode=mode)
            return distinct((passage_of[h.document] for h in hits), depth)

        return rank

    rankers = {"quarry-dense": ranker("dense"), "quarry-bm25": ranker("sparse"), "quarry-hybrid": ranker("hybrid")}
    return rankers, watch.seconds, library


def llamaindex_ranker(passages: Sequence[Passage], fetch: int, depth: int, batch_size: int) -> tuple[Ranker, float]:
    """llama-index's default VectorStoreIndex (evals.baselines, shared with `quarry eval`)."""
    from quarry.evals.baselines import LlamaIndexRetriever

    retriever = LlamaIndexRetriever(model_path(), batch_size=batch_size, top_k=fetch)
    retriever.warm_up()
    with Stopwatch() as watch:
        retriever.build(passages)
    say(f"llama-index: {len(passages)} passages indexed in {watch.seconds:.1f}s")

    def rank(question: str) -> list[str]:
        return retriever.ranked_passages(question, depth)

    return rank, watch.seconds


# evaluation ----------------------------------------------------------------------------------
def evaluate(
    dataset: str, passages: list[Passage], questions: list[Question], args: argparse.Namespace
) -> dict[str, Any]:
    """Index with every system, ask every question, score at document level."""
    from quarry.core.settings import EmbeddingSettings

    depth = max(KS)
    systems: dict[str, Ranker] = {}
    build_s: dict[str, float] = {}
    with temp_data_dir(dataset) as data_dir:
        rankers, seconds, library = quarry_rankers(passages, data_dir, args.fetch, depth)
        systems.update(rankers)
        build_s.update({name: seconds for name in rankers})
        if not args.no_llamaindex:
            systems["llamaindex-vector"], build_s["llamaindex-vector"] = llamaindex_ranker(
                passages, args.fetch, depth, EmbeddingSettings().batch_size
            )
        per_q: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
        query_s: dict[str, float] = dict.fromkeys(systems, 0.0)
        for i, q in enumerate(questions, start=1):
            for name, rank in systems.items():  # interleaved: load changes hit all systems alike
                with Stopwatch() as watch:
                    ranked = rank(q.text)
                query_s[name] += watch.seconds
                per_q[name].append(score_one(ranked, q.gold))
            if i % 100 == 0:
                say(f"{dataset}: {i}/{len(questions)} questions")
        library.close()
    return {
        "passages": len(passages),
        "questions": len(questions),
        "systems": {
            name: {
                **mean_scores(per_q[name]),
                "index_seconds": build_s[name],
                "ms_per_query": 1000 * query_s[name] / len(questions),
            }
            for name in systems
        },
    }


def verdict(systems: dict[str, dict[str, float]], metrics: Sequence[str]) -> list[str]:
    """Where hybrid does and does not beat dense and the llama-index baseline."""
    lines = []
    hybrid = systems["quarry-hybrid"]
    for rival in ("quarry-dense", "llamaindex-vector"):
        if rival not in systems:
            continue
        wins = [m for m in metrics if hybrid[m] > systems[rival][m]]
        losses = [m for m in metrics if hybrid[m] < systems[rival][m]]
        lines.append(
            f"hybrid vs {rival}: better on {', '.join(wins) or 'nothing'}; worse on {', '.join(losses) or 'nothing'}"
        )
    return lines


def show(dataset: str, result: dict[str, Any]) -> list[str]:
    multi = dataset == "hotpotqa"
    metrics = [f"recall@{k}" for k in KS] + ([f"all@{k}" for k in KS[1:]] if multi else []) + ["mrr"]
    heads = [m.replace("recall@", "R@").replace("all@", "All@").replace("mrr", "MRR") for m in metrics]
    rows = [
        [name, *(s[m] for m in metrics), f"{s['index_seconds']:.1f}", f"{s['ms_per_query']:.1f}"]
        for name, s in result["systems"].items()
    ]
    print_table(
        f"{dataset}: {result['questions']} questions over {result['passages']} passages (document level)",
        ["system", *heads, "index s", "ms/query"],
        rows,
    )
    lines = verdict(result["systems"], metrics)
    for line in lines:
        print(f"  {line}")
    return lines


def shrink(passages: list[Passage], questions: list[Question], limit: int, seed: int) -> list[Passage]:
    """At most `limit` passages (never fewer than the gold ones): every gold passage of the
    questions plus a seeded sample of distractors, in corpus order."""
    if not limit or limit >= len(passages):
        return passages
    gold = {g for q in questions for g in q.gold}
    others = [p.id for p in passages if p.id not in gold]
    keep = gold | set(random.Random(seed).sample(others, max(0, min(len(others), limit - len(gold)))))
    return [p for p in passages if p.id in keep]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=["hotpotqa", "squad"], default=["hotpotqa", "squad"])
    parser.add_argument("--squad-questions", type=int, default=1000, help="Questions sampled (0: all 5,696).")
    parser.add_argument("--hotpot-questions", type=int, default=0, help="First N questions (0: all 100).")
    parser.add_argument("--fetch", type=int, default=30, help="Chunk hits fetched per query before dedup.")
    parser.add_argument(
        "--max-passages",
        type=int,
        default=0,
        help="Shrink each corpus to the gold passages plus "
        "sampled distractors, N in all (0: whole corpus). Smaller corpora are easier.",
    )
    parser.add_argument("--no-llamaindex", action="store_true", help="Skip the llama-index baseline.")
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)

    results: dict[str, Any] = {}
    for dataset in args.datasets:
        if dataset == "hotpotqa":
            passages, questions = load_hotpotqa(args.eval_dir)
            questions = questions[: args.hotpot_questions or None]
        else:
            passages, questions = load_squad(args.eval_dir, args.squad_questions or None, args.seed)
        passages = shrink(passages, questions, args.max_passages, args.seed)
        say(f"{dataset}: {len(passages)} passages, {len(questions)} questions")
        results[dataset] = evaluate(dataset, passages, questions, args)
    for dataset, result in results.items():
        result["verdict"] = show(dataset, result)
    write_json("retrieval_quality", args, results)


if __name__ == "__main__":
    main()
