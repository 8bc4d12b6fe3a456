"""HotpotQA in its official (distractor) layout, with an optional corpus file.

Questions: a JSON list of {"_id", "question", "answer", "type", "level",
"supporting_facts": [[title, sentence index], ...], "context": [[title, [sentence, ...]], ...]}.
Corpus: {title: [sentence, ...]} (or 2WikiMultiHopQA's [{"title", "text"}, ...], whose
questions share this layout); without one, the corpus is the union of the questions'
context paragraphs (the distractor setting). Gold: the supporting titles; gold facts: the
supporting sentences."""

from __future__ import annotations

from pathlib import Path

from quarry.evals.datasets._io import Located, need, read_json, require_str, where
from quarry.evals.datasets.common import UniqueIds, corpus_doc
from quarry.evals.errors import DatasetError
from quarry.evals.types import CorpusDoc, Dataset, QAItem


def paragraph_text(sentences: list[str]) -> str:
    return " ".join(s.strip() for s in sentences if s.strip())


def _files(path: Path, corpus: Path | None) -> tuple[Path, Path | None]:
    if not path.is_dir():
        return path, corpus
    jsons = sorted(path.glob("*.json"))
    corpora = [p for p in jsons if "corpus" in p.name]
    questions = [p for p in jsons if "corpus" not in p.name]
    if len(questions) != 1:
        found = ", ".join(p.name for p in questions) or "none"
        raise DatasetError(f"{path}: expected one HotpotQA question file (*.json, not *corpus*), found {found}")
    return questions[0], corpus or (corpora[0] if len(corpora) == 1 else None)


def _sentences(value: object, place: str) -> list[str]:
    need(isinstance(value, list) and all(isinstance(s, str) for s in value), place, "sentences must be strings")
    assert isinstance(value, list)
    return value


def load_hotpotqa(path: Path, corpus: Path | None = None, name: str = "hotpotqa") -> Dataset:
    questions_path, corpus_path = _files(path, corpus)
    records = read_json(questions_path)
    need(isinstance(records, list), f"{questions_path} line 1", "expected a JSON list of questions")
    corpus_sentences: dict[str, list[str]] = {}
    if corpus_path is not None:
        raw = read_json(corpus_path)
        if isinstance(raw, list):  # 2WikiMultiHopQA's layout: [{"title", "text"}, ...]
            for index, entry in enumerate(raw):
                ok = isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("title", "text"))
                need(ok, f"{corpus_path} record {index}", 'expected {"title": ..., "text": ...}')
                corpus_sentences.setdefault(entry["title"], [entry["text"]])
        else:
            need(isinstance(raw, dict), f"{corpus_path} line 1", "expected {title: [sentence, ...]} or [{title, text}]")
            for title, sentences in raw.items():
                corpus_sentences[title] = _sentences(sentences, f"{where(raw, str(corpus_path))} ({title!r})")
    paragraphs = {title: paragraph_text(sentences) for title, sentences in corpus_sentences.items()}
    ids = UniqueIds("question")
    items: list[QAItem] = []
    context_paragraphs: dict[str, str] = {}
    for index, rec in enumerate(records):
        need(isinstance(rec, Located), f"{questions_path} record {index}", "expected a JSON object")
        item_id = ids.add(require_str(rec, "_id", "id"), rec.where)
        context = _context(rec)
        for title, sentences in context.items():
            context_paragraphs.setdefault(title, paragraph_text(sentences))
        gold, facts = _supporting(rec, context, corpus_sentences)
        answer = rec.get("answer")
        need(isinstance(answer, str), rec, "field 'answer' must be a string")
        items.append(
            QAItem(
                id=item_id,
                question=require_str(rec, "question"),
                answers=[answer],
                gold=gold,
                gold_facts=facts,
                group=rec.get("type") if isinstance(rec.get("type"), str) else None,
                metadata={k: rec[k] for k in ("type", "level") if isinstance(rec.get(k), str)},
            )
        )
    need(bool(items), f"{questions_path} line 1", "no questions")
    notes = []
    if corpus_path is None:
        paragraphs = context_paragraphs
        notes.append("no corpus file: the corpus is the questions' context paragraphs (distractor setting)")
    docs: list[CorpusDoc] = [
        corpus_doc(t, t, text, f"{corpus_path or questions_path} ({t!r})") for t, text in paragraphs.items() if text
    ]
    missing = sorted({g for item in items for g in item.gold} - set(paragraphs))
    if missing:
        notes.append(f"{len(missing)} supporting title(s) are not in the corpus, e.g. {missing[0]!r}")
    return Dataset(name=name, source=str(questions_path), corpus=docs, items=items, notes=notes)


def _context(rec: Located) -> dict[str, list[str]]:
    raw = rec.get("context", [])
    need(isinstance(raw, list), rec, "field 'context' must be a list of [title, [sentence, ...]]")
    context: dict[str, list[str]] = {}
    for entry in raw:
        ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
        need(ok, rec, "each context entry must be [title, [sentence, ...]]")
        context[entry[0]] = _sentences(entry[1], f"{rec.where} (context {entry[0]!r})")
    return context


def _supporting(
    rec: Located, context: dict[str, list[str]], corpus: dict[str, list[str]]
) -> tuple[list[str], list[str]]:
    facts_raw = rec.get("supporting_facts")
    need(isinstance(facts_raw, list), rec, "field 'supporting_facts' must be a list of [title, sentence index]")
    assert isinstance(facts_raw, list)
    gold: list[str] = []
    facts: list[str] = []
    for fact in facts_raw:
        ok = isinstance(fact, list) and len(fact) == 2 and isinstance(fact[0], str) and isinstance(fact[1], int)
        need(ok, rec, f"supporting fact {fact!r} is not [title, sentence index]")
        title, idx = fact
        if title not in gold:
            gold.append(title)
        sentences = context.get(title) or corpus.get(title, [])
        if 0 <= idx < len(sentences) and sentences[idx].strip():
            facts.append(sentences[idx].strip())
    return gold, facts
