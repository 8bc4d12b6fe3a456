"""L-Eval-style long-document QA: JSONL lines of

    {"input": "<long document>", "instructions": ["question", ...], "outputs": ["answer", ...],
     "source": "...", "evaluation": "exam" | "f1" | "rouge" | ...}

Each line's document is its own scope: its questions are asked over it alone. Exam
(multiple-choice) questions carry their options in the instruction (`A. ...` lines) and a
letter answer (`B`, `(B)`, `ABD`); they are scored by letter accuracy."""

from __future__ import annotations

from pathlib import Path

from quarry.evals.datasets._io import iter_jsonl, need, optional_str, require_str, str_list
from quarry.evals.datasets.common import answer_letters, corpus_doc, parse_options
from quarry.evals.errors import DatasetError
from quarry.evals.types import Dataset, QAItem


def load_leval(path: Path) -> Dataset:
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"{path}: no .jsonl files")
    docs = []
    items = []
    notes: list[str] = []
    for file in files:
        for rec in iter_jsonl(file):
            line = rec.where.rsplit(" ", 1)[-1]
            doc_id = f"{file.stem}:{line}"
            instructions = str_list(rec, "instructions", "instruction", required=True)
            outputs = str_list(rec, "outputs", "output", required=True)
            need(
                len(instructions) == len(outputs),
                rec,
                f"{len(instructions)} instructions but {len(outputs)} outputs; they must pair up",
            )
            need(bool(instructions), rec, "no instructions")
            source = optional_str(rec, "source")
            docs.append(corpus_doc(doc_id, source or doc_id, require_str(rec, "input"), rec.where))
            exam = rec.get("evaluation") == "exam"
            for j, (question, answer) in enumerate(zip(instructions, outputs, strict=True)):
                choices = parse_options(question) if exam else []
                letters = answer_letters(answer, choices) if choices else None
                if exam and letters is None:
                    notes.append(f"{rec.where} question {j}: no options or letter answer found; scored as free text")
                items.append(
                    QAItem(
                        id=f"{doc_id}:{j}",
                        question=question.strip(),
                        answers=[letters] if letters else [answer.strip()],
                        choices=choices if letters else [],
                        gold=[doc_id],
                        scope=doc_id,
                        group=source or file.stem,
                    )
                )
    return Dataset(name="leval", source=str(path), corpus=docs, items=items, notes=notes[:20])
