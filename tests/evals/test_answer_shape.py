"""Answers read as answers: the shape checks on hand-made answers, and over the outputs of an
eval of the extractive agent and a single search on public multi-hop questions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quarry.evals import EvalConfig, run_eval
from quarry.evals.answer_shape import shape_problems
from quarry.retrieval.library import Library
from tests.conftest import EVAL_DIR

NOTE = "\n\n(Extractive answer: sentences quoted from the sources; no generative model is configured.)"


@pytest.mark.parametrize(
    ("question", "answer", "problem"),
    [
        ("How do I declare a query parameter?", "You [1].\nDeclare it as a function parameter. [1]", "short answer"),
        ("What does the API return?", "API [1]. It returns a JSON document. [2]", "lone fragment"),
        (
            "When was the dam built?",
            "The dam was completed in 1936. [1] The dam was completed in 1936! [2]",
            "repeats",
        ),
        ("What are query parameters?", "Query parameters { #query-parameters } are optional. [1]", "markup"),
    ],
)
def test_malformed_answers_are_caught(question: str, answer: str, problem: str) -> None:
    problems = shape_problems(question, answer + NOTE)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("When was the Hoover Dam completed?", "1936 [1]\nThe Hoover Dam was completed in 1936. [1]"),
        ("Which is older, Alpha or Beta?", "Alpha [1]\nAlpha: It was founded in 1900 [1]; Beta: in 1950 [2]."),
        ("Who is the CEO?", "Not found in the collection."),
        ("How do I set a default?", "Give the parameter a default value in the function. [1] It is then optional. [2]"),
    ],
)
def test_well_formed_answers_pass(question: str, answer: str) -> None:
    assert shape_problems(question, answer + NOTE) == []


def _eval_dir() -> Path:
    for candidate in (os.environ.get("QUARRY_EVAL_DIR"), EVAL_DIR, "/work/shared/eval"):
        if candidate and (Path(candidate) / "musique" / "musique_dev.jsonl").is_file():
            return Path(candidate)
    pytest.skip("the shared eval data (../shared/eval) is not on this machine")


@pytest.mark.slow
def test_no_malformed_answer_over_an_eval_of_multi_hop_questions(library: Library, tmp_path: Path) -> None:
    """The first ten MuSiQue dev questions (2-4 hops), over their own 200 paragraphs, answered
    by the extractive agent and by one hybrid search: every answer is well formed."""
    records = [json.loads(line) for line in (_eval_dir() / "musique" / "musique_dev.jsonl").open()][:10]
    corpus: dict[tuple[str, str], str] = {}
    questions = []
    for r in records:
        gold = []
        for p in r["paragraphs"]:
            pid = corpus.setdefault((p["title"], p["paragraph_text"]), f"p{len(corpus)}")
            if p["is_supporting"]:
                gold.append(pid)
        questions.append({"id": r["id"], "question": r["question"], "answers": [r["answer"]], "gold": gold})
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": pid, "title": t, "text": x}) + "\n" for (t, x), pid in corpus.items())
    )
    (qa / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    config = EvalConfig.model_validate(
        {"dataset": "jsonl", "path": qa / "qa.jsonl", "systems": ["hybrid", "agent"], "ks": [10]}
    )
    report = run_eval(config, library=library, out=tmp_path / "runs")
    items = [json.loads(line) for line in (Path(report.run_dir) / "items.jsonl").read_text().splitlines()]
    assert len(items) == 20 and not any(r["error"] for r in items)
    bad = {
        (r["system"], r["question"]): shape_problems(r["question"], r["answer"])
        for r in items
        if r["scores"]["well_formed"] < 1
    }
    assert not bad, bad
    assert report.systems["agent"].metrics["well_formed"] == 1.0
