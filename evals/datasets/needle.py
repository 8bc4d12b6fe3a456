"""Needle in a haystack: essays + a needle sentence, over a grid of haystack lengths and
needle depths (gkamradt/LLMTest_NeedleInAHaystack).

Each grid cell is one document: the essays, concatenated in file-name order (repeated if
short) and cut to the length, with the needle inserted at the depth, after the end of the
sentence before that point (as the original does). Lengths count words (the original counts
cl100k tokens; a word is about 1.3 of them). Each cell's question is asked over its own
haystack; the answer should contain the needle."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from quarry.evals.datasets._io import Located, need, read_json
from quarry.evals.errors import DatasetError
from quarry.evals.types import CorpusDoc, Dataset, QAItem

DEFAULT_LENGTHS = (1000, 4000, 16000)
DEFAULT_DEPTHS = (0, 25, 50, 75, 100)


def load_needle(path: Path, lengths: Sequence[int] | None = None, depths: Sequence[int] | None = None) -> Dataset:
    needles_path = path / "needles.json" if path.is_dir() else path
    essays_dir = needles_path.parent / "essays"
    spec = read_json(needles_path)
    needle, question = _needle(spec, needles_path)
    files = sorted(essays_dir.glob("*.txt"))
    if not files:
        raise DatasetError(f"{essays_dir}: no essays (*.txt)")
    essays = "\n\n".join(f.read_text(encoding="utf-8").strip() for f in files)
    lengths = list(lengths or DEFAULT_LENGTHS)
    depths = list(depths or DEFAULT_DEPTHS)
    need(
        all(n >= 2 * len(needle.split()) for n in lengths),
        str(needles_path),
        f"lengths must be at least {2 * len(needle.split())} words (twice the needle)",
    )
    need(all(0 <= d <= 100 for d in depths), str(needles_path), "depths are percentages from 0 to 100")
    docs: list[CorpusDoc] = []
    items: list[QAItem] = []
    for length in lengths:
        for depth in depths:
            doc_id = f"haystack-{length}w-{depth}pct"
            text = haystack(essays, needle, length, depth)
            docs.append(CorpusDoc(id=doc_id, title=f"Haystack of {length} words, needle at {depth}%", text=text))
            items.append(
                QAItem(
                    id=f"needle-{length}w-{depth}pct",
                    question=question,
                    answers=[needle],
                    gold_facts=[needle],
                    scope=doc_id,
                    group=f"{length} words",
                    metadata={"length": length, "depth": depth},
                )
            )
    notes = [f"{len(files)} essays, {len(essays.split()):,} words; lengths in words"]
    return Dataset(name="needle", source=str(needles_path), corpus=docs, items=items, notes=notes)


def _needle(spec: object, path: Path) -> tuple[str, str]:
    need(isinstance(spec, Located), f"{path} line 1", "expected a JSON object")
    assert isinstance(spec, Located)
    single = spec.get("single_needle", spec)
    ok = isinstance(single, dict) and isinstance(single.get("needle"), str)
    need(ok, spec, 'expected {"single_needle": {"needle", "retrieval_question"}} or {"needle", "question"}')
    question = single.get("retrieval_question") or single.get("question")
    need(isinstance(question, str) and bool(question.strip()), spec, "the needle has no question")
    needle = " ".join(single["needle"].split())
    need(bool(needle), spec, "the needle is empty")
    return needle, str(question).strip()


def haystack(essays: str, needle: str, length: int, depth: float) -> str:
    """`length` words of the essays with the needle inserted at `depth` percent."""
    budget = length - len(needle.split())
    words = list(re.finditer(r"\S+", essays))
    text = essays
    while len(words) < budget:  # repeat the essays until long enough
        text = f"{text}\n\n{essays}"
        words = list(re.finditer(r"\S+", text))
    text = text[: words[budget - 1].end()]
    if depth >= 100:
        return f"{text} {needle}"
    point = words[int(budget * depth / 100)].start() if depth > 0 else 0
    cut = text.rfind(". ", 0, point)  # insert after the sentence that ends before the point
    cut = 0 if cut < 0 or depth == 0 else cut + 1
    return f"{text[:cut].rstrip()} {needle} {text[cut:].lstrip()}".strip()
