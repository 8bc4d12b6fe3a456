"""Quarry's own QA format: one JSON object per line.

    {"id": "q1", "question": "...", "answers": ["..."],
     "gold": ["doc id, source name or title", ...], "gold_facts": ["supporting sentence"],
     "choices": ["option A", "option B"], "scope": "doc id", "group": "any label"}

Only `question` is required. `answer` (a string) may stand for `answers`; `gold_ids`,
`gold_titles`, `gold_documents` and `gold_passage_id` for `gold`. With `choices`, answers
are letters (or an option's exact text). The corpus is a JSONL file of
{"id", "title", "text"} or a folder of .txt/.md files: given with `corpus`, or found
beside the QA file as corpus.jsonl or passages.jsonl; with neither, questions run against
an existing collection.
"""

from __future__ import annotations

from pathlib import Path

from quarry.evals.datasets._io import iter_jsonl, need, optional_str, require_str, str_list
from quarry.evals.datasets.common import UniqueIds, check_scopes, choice_item_answers, load_passages
from quarry.evals.errors import DatasetError
from quarry.evals.types import Dataset, QAItem

QA_NAMES = ("qa.jsonl", "questions.jsonl")
CORPUS_NAMES = ("corpus.jsonl", "passages.jsonl")


def load_qa_jsonl(path: Path, corpus: Path | None = None, name: str = "jsonl") -> Dataset:
    """Load a QA file (or a folder holding qa.jsonl and corpus.jsonl/passages.jsonl)."""
    qa_path = path
    if path.is_dir():
        qa_path = next((path / n for n in QA_NAMES if (path / n).is_file()), path / QA_NAMES[0])
        if corpus is None:
            corpus = next((path / n for n in CORPUS_NAMES if (path / n).is_file()), None)
    elif corpus is None:
        corpus = next((path.parent / n for n in CORPUS_NAMES if (path.parent / n).is_file()), None)
    items = read_items(qa_path)
    docs = load_passages(corpus) if corpus is not None else []
    check_scopes(items, docs, str(qa_path))
    notes = [] if corpus is not None else ["no corpus: questions run against an existing collection"]
    return Dataset(name=name, source=str(qa_path), corpus=docs, items=items, notes=notes)


def read_items(path: Path) -> list[QAItem]:
    ids = UniqueIds("question")
    items = []
    for rec in iter_jsonl(path):
        item_id = require_str(rec, "id") if rec.get("id") is not None else f"line-{rec.where.rsplit(' ', 1)[-1]}"
        ids.add(item_id, rec.where)
        choices = str_list(rec, "choices", "options")
        answers = str_list(rec, "answers", "answer")
        if choices:
            answers = choice_item_answers(rec, answers, choices)
        gold = (
            str_list(rec, "gold")
            + str_list(rec, "gold_ids")
            + str_list(rec, "gold_documents")
            + str_list(rec, "gold_titles")
            + str_list(rec, "gold_passage_id")
        )
        need(isinstance(rec.get("metadata", {}), dict), rec, "field 'metadata' must be an object")
        items.append(
            QAItem(
                id=item_id,
                question=require_str(rec, "question", "query"),
                answers=answers,
                choices=choices,
                gold=list(dict.fromkeys(gold)),
                gold_facts=str_list(rec, "gold_facts", "supporting_facts"),
                scope=optional_str(rec, "scope"),
                group=optional_str(rec, "group"),
                metadata=dict(rec.get("metadata") or {}),
            )
        )
    if not items:
        raise DatasetError(f"{path}: no questions")
    return items
