"""Questions a user would ask over another project's documentation, answered by the agent.

Ingests a folder of markdown files (another project's docs, kept outside this repository)
into a throw-away collection, asks every question of a JSONL file through `AgentGraph` (as
`quarry ask` does: the configured model, or the extractive agent when none is), and grades
each answer against its reference: `correct` when the answer text holds every `must` group
(any alternative, case-insensitive) and cites a gold page; `partly` when it holds some group,
or cites a gold page whose cited passage holds one; `wrong` otherwise. Prints a table per
kind of question and writes every answer to JSON so that a person can check the grading.

    .venv/bin/python benchmarks/docs_qa.py --docs /tmp/docsqa/docs/en/docs \\
        --questions benchmarks/docs_qa/fastapi_questions.jsonl --commit-label after

See benchmarks/docs_qa/README.md for the corpus (repository and commit) and the questions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLLECTION = "docs-qa"
GRADES = ("correct", "partly", "wrong")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, required=True, help="The documentation folder (markdown files).")
    parser.add_argument(
        "--questions", type=Path, default=HERE / "docs_qa" / "fastapi_questions.jsonl", help="Questions (JSONL)."
    )
    parser.add_argument("--corpus", default="fastapi/fastapi docs/en/docs", help="What the folder is (for the JSON).")
    parser.add_argument("--commit-label", default="", help="A tag for this run (e.g. before, after, a commit).")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="Quarry data directory to use (default: a temporary one)."
    )
    parser.add_argument("--only", default="", help="Comma-separated question ids to ask (default: all).")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: results/docs_qa-<label>.json).")
    return parser.parse_args()


def quiet_environment() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def markdown_files(root: Path) -> list[tuple[Path, str]]:
    """Every .md file under `root` (images and the rest skipped), named by its path in the folder."""
    return [(p, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*.md")) if p.is_file()]


def holds(text: str, group: list[str]) -> bool:
    low = text.lower()
    return any(alt.lower() in low for alt in group)


def grade(question: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """correct / partly / wrong for one answer (see the module docstring)."""
    text = answer["answer"] + "\n" + (answer.get("short_answer") or "")
    gold = set(question["pages"])
    groups = [holds(text, g) for g in question["must"]]
    cited = [c for c in answer["citations"] if c["document"] in gold]
    passages = {e["chunk_id"]: e["text"] for e in answer["evidence"]}
    cited_fact = any(holds(passages.get(c["chunk_id"], c["snippet"]), g) for c in cited for g in question["must"])
    if all(groups) and cited:
        verdict = "correct"
    elif any(groups) or cited_fact:
        verdict = "partly"
    else:
        verdict = "wrong"
    evidence_docs = [e["document"] for e in answer["evidence"]]
    first_gold = next((i + 1 for i, d in enumerate(evidence_docs) if d in gold), None)
    fact_in_evidence = any(
        holds(e["text"], g) for e in answer["evidence"] if e["document"] in gold for g in question["must"]
    )
    return {
        "grade": verdict,
        "must_found": groups,
        "cites_gold": bool(cited),
        "cited_gold_passage_has_fact": cited_fact,
        "gold_in_evidence": first_gold is not None,
        "first_gold_rank": first_gold,
        "fact_in_gold_evidence": fact_in_evidence,
        "not_found": not answer["citations"],
        "all_gold_pages_in_evidence": gold <= set(evidence_docs),
    }


def answer_json(answer: Any) -> dict[str, Any]:
    """What `quarry ask --json` prints (the fields both old and new trees have)."""
    return {
        "answer": answer.answer,
        "short_answer": answer.short_answer,
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        "nodes": [n.model_dump(mode="json") for n in answer.nodes],
        "evidence": [e.model_dump(mode="json") for e in answer.evidence],
        "extractive": answer.extractive,
        "partial": answer.partial,
        "notes": answer.notes,
    }


def tree_commit(package_dir: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def ask_all(agent: Any, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for q in questions:
        start = time.perf_counter()
        answer = answer_json(await agent.ask(COLLECTION, q["question"]))
        seconds = time.perf_counter() - start
        rows.append({**q, "seconds": round(seconds, 2), "result": answer, **grade(q, answer)})
        r = rows[-1]
        flag = " (not found)" if r["not_found"] else ""
        print(f"  {q['id']} {r['grade']:<7} gold@{r['first_gold_rank'] or '-'} {seconds:5.1f}s{flag}", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: ["lookup", "howto", "comparison", "twostep"].index(k))
    out = []
    for kind in [*kinds, "total"]:
        part = [r for r in rows if kind in ("total", r["kind"])]
        count = Counter(r["grade"] for r in part)
        out.append(
            {
                "kind": kind,
                "n": len(part),
                **{g: count[g] for g in GRADES},
                "not_found": sum(r["not_found"] for r in part),
                "gold_in_evidence": sum(r["gold_in_evidence"] for r in part),
                "all_gold_in_evidence": sum(r["all_gold_pages_in_evidence"] for r in part),
                "fact_in_gold_evidence": sum(r["fact_in_gold_evidence"] for r in part),
            }
        )
    return out


def print_table(label: str, summary: list[dict[str, Any]]) -> None:
    cols = ["kind", "n", *GRADES, "not_found", "gold_in_evidence", "all_gold_in_evidence", "fact_in_gold_evidence"]
    print(f"\ndocs QA ({label})")
    print(" | ".join(cols))
    for row in summary:
        print(" | ".join(str(row[c]) for c in cols))


def main() -> None:
    args = parse_args()
    quiet_environment()
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    if args.only:
        wanted = set(args.only.split(","))
        questions = [q for q in questions if q["id"] in wanted]
    files = markdown_files(args.docs)

    import quarry.agents
    from quarry.agents.graph import AgentGraph
    from quarry.agents.llm.factory import make_chat_model
    from quarry.core.settings import Settings
    from quarry.retrieval import Library

    code = Path(next(iter(quarry.agents.__path__))).parent
    label = args.commit_label or tree_commit(code)
    print(f"quarry from {code} ({tree_commit(code)}), {len(files)} markdown files, {len(questions)} questions")

    with tempfile.TemporaryDirectory(prefix="quarry-docs-qa-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        settings = Settings(storage={"data_dir": data_dir})
        library = Library(settings)
        start = time.perf_counter()
        report = library.ingest_files(COLLECTION, files)
        ingest_s = time.perf_counter() - start
        print(
            f"ingested in {ingest_s:.0f}s: {len(report.added)} added, {len(report.unchanged)} unchanged, "
            f"{len(report.failed)} failed, {report.chunks} chunks",
            flush=True,
        )
        for failure in report.failed:
            print(f"  failed: {failure}")
        model = make_chat_model(settings.llm)
        agent = AgentGraph(library, model=model)
        start = time.perf_counter()
        rows = asyncio.run(ask_all(agent, questions))
        ask_s = time.perf_counter() - start

    summary = table(rows)
    print_table(label, summary)
    output = args.output or HERE / "results" / f"docs_qa-{label}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "label": label,
        "quarry_tree": str(code),
        "quarry_commit": tree_commit(code),
        "corpus": args.corpus,
        "docs": str(args.docs),
        "files": len(files),
        "model": settings.llm.backend,
        "ingest_s": round(ingest_s, 1),
        "chunks": report.chunks,
        "failed": [str(f) for f in report.failed],
        "ask_s": round(ask_s, 1),
        "load_average": os.getloadavg(),
        "machine": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": summary,
        "questions": rows,
    }
    output.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
