"""SQuAD: the official JSON ({"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]})
or the passages.jsonl + qa.jsonl layout ({"id": "Title#n", "title", "text"} and
{"id", "question", "answers", "gold_passage_id"}). Passage ids are `Title#n` in both, so
runs on either layout compare. SQuAD 2.0's unanswerable questions are skipped."""

from __future__ import annotations

from pathlib import Path

from quarry.evals.datasets._io import Located, need, read_json, require_str
from quarry.evals.datasets.common import UniqueIds, corpus_doc
from quarry.evals.datasets.qa_jsonl import load_qa_jsonl
from quarry.evals.errors import DatasetError
from quarry.evals.types import Dataset, QAItem


def load_squad(path: Path) -> Dataset:
    if path.is_dir():
        if (path / "qa.jsonl").is_file():
            dataset = load_qa_jsonl(path, name="squad")
            if not dataset.corpus:
                raise DatasetError(f"{path}: qa.jsonl without passages.jsonl")
            return dataset
        jsons = sorted(path.glob("*.json"))
        if len(jsons) != 1:
            raise DatasetError(f"{path}: expected qa.jsonl + passages.jsonl or one official SQuAD .json file")
        path = jsons[0]
    if path.suffix == ".jsonl":
        return load_qa_jsonl(path, name="squad")
    return _official(path)


def _official(path: Path) -> Dataset:
    root = read_json(path)
    need(
        isinstance(root, Located) and isinstance(root.get("data"), list),
        f"{path} line 1",
        'expected the official SQuAD layout {"data": [...]}',
    )
    ids = UniqueIds("question")
    docs = []
    items = []
    skipped = 0
    for article in root["data"]:
        need(isinstance(article, Located), f"{path}", "each entry of 'data' must be an object")
        title = require_str(article, "title")
        paragraphs = article.get("paragraphs")
        need(isinstance(paragraphs, list), article, "field 'paragraphs' must be a list")
        for n, para in enumerate(paragraphs):
            need(isinstance(para, Located), article, f"paragraph {n} must be an object")
            doc = corpus_doc(f"{title}#{n}", title, require_str(para, "context"), para.where)
            docs.append(doc)
            qas = para.get("qas", [])
            need(isinstance(qas, list), para, "field 'qas' must be a list")
            for qa in qas:
                need(isinstance(qa, Located), para, "each entry of 'qas' must be an object")
                item_id = ids.add(require_str(qa, "id"), qa.where)
                if qa.get("is_impossible") is True:
                    skipped += 1
                    continue
                answers = qa.get("answers")
                ok = isinstance(answers, list) and all(
                    isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers
                )
                need(ok and bool(answers), qa, "field 'answers' must be a non-empty list of {\"text\": ...}")
                texts = list(dict.fromkeys(a["text"].strip() for a in answers if a["text"].strip()))
                items.append(QAItem(id=item_id, question=require_str(qa, "question"), answers=texts, gold=[doc.id]))
    need(bool(items), f"{path} line 1", "no answerable questions")
    notes = [f"skipped {skipped} unanswerable question(s)"] if skipped else []
    return Dataset(name="squad", source=str(path), corpus=docs, items=items, notes=notes)
