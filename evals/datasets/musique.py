"""MuSiQue's JSONL layout: one question per line,

    {"id", "question", "answer", "answer_aliases": [...], "answerable": true,
     "paragraphs": [{"idx", "title", "paragraph_text", "is_supporting"}, ...], ...}

The corpus is the union of all questions' paragraphs (the same title and text once);
gold: the supporting paragraphs. Unanswerable questions (MuSiQue-Full) are skipped."""

from __future__ import annotations

from pathlib import Path

from quarry.evals.datasets._io import iter_jsonl, need, require_str, str_list
from quarry.evals.datasets.common import UniqueIds, corpus_doc
from quarry.evals.errors import DatasetError
from quarry.evals.types import CorpusDoc, Dataset, QAItem


def load_musique(path: Path) -> Dataset:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if len(files) != 1:
            raise DatasetError(f"{path}: expected one MuSiQue .jsonl file, found {len(files)}")
        path = files[0]
    ids = UniqueIds("question")
    docs: dict[tuple[str, str], CorpusDoc] = {}
    titles: dict[str, int] = {}  # title -> last number given to a repeat
    used: set[str] = set()
    items: list[QAItem] = []
    skipped = 0
    for rec in iter_jsonl(path):
        item_id = ids.add(require_str(rec, "id", "_id"), rec.where)
        if rec.get("answerable") is False:
            skipped += 1
            continue
        paragraphs = rec.get("paragraphs")
        need(isinstance(paragraphs, list) and bool(paragraphs), rec, "field 'paragraphs' must be a non-empty list")
        assert isinstance(paragraphs, list)
        gold: list[str] = []
        for n, para in enumerate(paragraphs):
            ok = isinstance(para, dict) and isinstance(para.get("paragraph_text"), str)
            need(ok, rec, f"paragraph {n} must be an object with 'paragraph_text'")
            title = para.get("title") if isinstance(para.get("title"), str) else ""
            text = para["paragraph_text"].strip()
            if not text:
                continue
            key = (title, text)
            if key not in docs:
                doc_id = title
                while not doc_id or doc_id in used:
                    titles[title] = titles.get(title, 1) + 1
                    doc_id = f"{title or 'untitled'} ({titles[title]})"
                used.add(doc_id)
                docs[key] = corpus_doc(doc_id, title, text, rec.where)
            if para.get("is_supporting") is True and docs[key].id not in gold:
                gold.append(docs[key].id)
        answer = require_str(rec, "answer")
        items.append(
            QAItem(
                id=item_id,
                question=require_str(rec, "question"),
                answers=list(dict.fromkeys([answer, *str_list(rec, "answer_aliases")])),
                gold=gold,
                group=item_id.split("__", 1)[0] if "__" in item_id else None,
            )
        )
    if not items:
        raise DatasetError(f"{path}: no answerable questions")
    notes = [f"skipped {skipped} unanswerable question(s)"] if skipped else []
    return Dataset(name="musique", source=str(path), corpus=list(docs.values()), items=items, notes=notes)
