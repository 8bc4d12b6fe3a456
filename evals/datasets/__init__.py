"""Loaders of QA sets: each gives a corpus (documents to ingest) and QA items."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from quarry.evals.datasets.common import load_passages
from quarry.evals.datasets.hotpotqa import load_hotpotqa
from quarry.evals.datasets.leval import load_leval
from quarry.evals.datasets.musique import load_musique
from quarry.evals.datasets.needle import load_needle
from quarry.evals.datasets.qa_jsonl import load_qa_jsonl
from quarry.evals.datasets.squad import load_squad
from quarry.evals.errors import DatasetError
from quarry.evals.types import Dataset

DatasetName = Literal["hotpotqa", "2wiki", "squad", "musique", "leval", "needle", "jsonl"]
DATASETS: tuple[str, ...] = ("hotpotqa", "2wiki", "squad", "musique", "leval", "needle", "jsonl")


def load_dataset(
    name: str,
    path: Path,
    corpus: Path | None = None,
    needle_lengths: Sequence[int] | None = None,
    needle_depths: Sequence[int] | None = None,
) -> Dataset:
    """Load a QA set by format name; `corpus` (jsonl and hotpotqa) names a corpus file."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if corpus is not None and name not in ("jsonl", "hotpotqa", "2wiki"):
        raise DatasetError(f"--corpus applies to the jsonl, hotpotqa and 2wiki formats, not {name}")
    if name in ("hotpotqa", "2wiki"):  # 2WikiMultiHopQA shares HotpotQA's layout
        return load_hotpotqa(path, corpus, name)
    if name == "squad":
        return load_squad(path)
    if name == "musique":
        return load_musique(path)
    if name == "leval":
        return load_leval(path)
    if name == "needle":
        return load_needle(path, needle_lengths, needle_depths)
    if name == "jsonl":
        return load_qa_jsonl(path, corpus)
    raise DatasetError(f"unknown dataset format {name!r}: use one of {', '.join(DATASETS)}")


__all__ = [
    "DATASETS",
    "DatasetName",
    "load_dataset",
    "load_hotpotqa",
    "load_leval",
    "load_musique",
    "load_needle",
    "load_passages",
    "load_qa_jsonl",
    "load_squad",
]
