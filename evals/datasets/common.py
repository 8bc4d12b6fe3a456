"""Pieces every loader shares: corpus documents, unique ids, multiple-choice answers."""

from __future__ import annotations

import re
from pathlib import Path

from quarry.evals.datasets._io import Located, iter_jsonl, need, optional_str, require_str
from quarry.evals.errors import DatasetError
from quarry.evals.types import LETTERS, CorpusDoc, QAItem

_TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
_OPTION = re.compile(r"^\s*\(?([A-Z])[\).:]\s+(\S.*)$")
_LETTER_ANSWER = re.compile(r"^\s*\(?([A-Z](?:\s*,?\s*[A-Z])*)\)?\s*\.?\s*$")


def corpus_doc(doc_id: str, title: str, text: str, where: str) -> CorpusDoc:
    """A corpus document; empty text is an error at `where`."""
    text = text.strip()
    if not text:
        raise DatasetError(f"{where}: document {doc_id!r} has no text")
    return CorpusDoc(id=doc_id, title=title.strip() or doc_id, text=text)


class UniqueIds:
    """Refuses a second item or document with the same id, naming both places."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seen: dict[str, str] = {}

    def add(self, key: str, where: str) -> str:
        if key in self.seen:
            raise DatasetError(f"{where}: duplicate {self.what} id {key!r} (first at {self.seen[key]})")
        self.seen[key] = where
        return key


def load_passages(path: Path) -> list[CorpusDoc]:
    """A corpus: a JSONL file of {"id", "title" (optional), "text"} or a folder of .txt/.md
    files (id = path relative to the folder, title = first Markdown heading or file stem)."""
    if path.is_dir():
        return _load_folder(path)
    ids = UniqueIds("document")
    docs = []
    for rec in iter_jsonl(path):
        doc_id = ids.add(require_str(rec, "id", "doc_id", "passage_id"), rec.where)
        title = optional_str(rec, "title") or doc_id
        docs.append(corpus_doc(doc_id, title, require_str(rec, "text", "paragraph_text", "contents"), rec.where))
    if not docs:
        raise DatasetError(f"{path}: no documents")
    return docs


def _load_folder(root: Path) -> list[CorpusDoc]:
    docs = []
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES):
        rel = file.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (UnicodeDecodeError, OSError) as exc:
            raise DatasetError(f"{file}: cannot read it as UTF-8 text ({exc})") from None
        heading = re.search(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE)
        docs.append(corpus_doc(rel, heading.group(1) if heading else file.stem, text, str(file)))
    if not docs:
        raise DatasetError(f"{root}: no .txt or .md files")
    return docs


def parse_options(text: str) -> list[str]:
    """Option texts of lines like `A. ...`, `(B) ...`, `C) ...` in order A, B, C...;
    empty unless the letters run from A without a gap."""
    options: list[str] = []
    for line in text.splitlines():
        match = _OPTION.match(line)
        if match and match.group(1) == LETTERS[len(options)]:
            options.append(match.group(2).strip())
    return options if len(options) >= 2 else []


def answer_letters(answer: str, choices: list[str]) -> str | None:
    """The letters an answer names ('B', '(C)', 'A, D', 'BD', or an option's text), or None."""
    match = _LETTER_ANSWER.match(answer.strip().upper())
    if match:
        letters = "".join(sorted(set(re.sub(r"[^A-Z]", "", match.group(1)))))
        if letters and all(LETTERS.index(x) < len(choices) for x in letters):
            return letters
    wanted = answer.strip().lower()
    for i, option in enumerate(choices):
        if option.strip().lower() == wanted:
            return LETTERS[i]
    return None


def choice_item_answers(rec: Located | str, answers: list[str], choices: list[str]) -> list[str]:
    """Answers of a multiple-choice item as letters; an answer naming no option is an error."""
    need(len(choices) <= len(LETTERS), rec, f"at most {len(LETTERS)} choices")
    letters = []
    for answer in answers:
        found = answer_letters(answer, choices)
        need(found is not None, rec, f"answer {answer!r} names none of the {len(choices)} choices")
        letters.append(str(found))
    return letters


def check_scopes(items: list[QAItem], corpus: list[CorpusDoc], source: str) -> None:
    """Every item's scope must name a corpus document."""
    ids = {d.id for d in corpus}
    for item in items:
        if item.scope is not None and corpus and item.scope not in ids:
            raise DatasetError(f"{source}: item {item.id!r} has scope {item.scope!r}, which is not in the corpus")
