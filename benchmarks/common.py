"""Helpers shared by the benchmark scripts: environment, eval data, timing, tables, JSON."""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from quarry.evals.baselines import BaselinePassage as Passage  # one document of an eval corpus: id, title, text
from quarry.evals.metrics import latency_summary, percentile  # noqa: F401  (one implementation, shared)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_EVAL_DIR = ROOT.parent / "shared" / "eval"


# environment ------------------------------------------------------------------------------
def quiet_environment() -> None:
    """Offline model loading, no tokenizer fork warnings, no progress bars (call before
    importing transformers or sentence-transformers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR, help="The shared eval data.")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch and FAISS (OpenMP) threads (0: their default, one per core).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of every sample drawn.")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: results/<name>.json).")
    return parser


def apply_threads(threads: int) -> None:
    """Cap torch's and FAISS's OpenMP threads (both default to one per core)."""
    if threads > 0:
        import faiss
        import torch

        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)


def environment() -> dict[str, Any]:
    """What the numbers depend on (evals.report.environment), with the benchmarks' baseline too."""
    from quarry.evals.report import environment as describe

    return describe(extra=("llama-index-embeddings-huggingface",))


@contextmanager
def temp_data_dir(prefix: str) -> Iterator[Path]:
    """A throw-away Quarry data directory."""
    with tempfile.TemporaryDirectory(prefix=f"quarry-bench-{prefix}-") as tmp:
        yield Path(tmp)


def model_path() -> str:
    """Filesystem path of the default (bundled) embedding model."""
    from quarry.core.settings import DEFAULT_EMBEDDING_MODEL
    from quarry.retrieval.embedder import resolve_model

    return resolve_model(DEFAULT_EMBEDDING_MODEL)


# eval data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    """A question with the ids of the passages that answer it."""

    id: str
    text: str
    gold: frozenset[str]


def load_hotpotqa(eval_dir: Path) -> tuple[list[Passage], list[Question]]:
    """HotpotQA: one passage per corpus paragraph (id = title); gold = supporting titles."""
    base = eval_dir / "hotpotqa"
    corpus: dict[str, list[str]] = json.loads((base / "hotpotqa_train_corpus.json").read_text())
    passages = [Passage(title, title, " ".join(s.strip() for s in sents)) for title, sents in corpus.items()]
    records = json.loads((base / "hotpotqa_train.json").read_text())
    questions = [
        Question(r["_id"], r["question"], frozenset(title for title, _ in r["supporting_facts"])) for r in records
    ]
    return passages, questions


def load_squad(eval_dir: Path, sample: int | None, seed: int) -> tuple[list[Passage], list[Question]]:
    """SQuAD: every passage; `sample` questions drawn with `seed` (None: all)."""
    base = eval_dir / "squad"
    passages = [Passage(r["id"], r["title"], r["text"]) for r in _jsonl(base / "passages.jsonl")]
    questions = [Question(r["id"], r["question"], frozenset([r["gold_passage_id"]])) for r in _jsonl(base / "qa.jsonl")]
    if sample is not None and sample < len(questions):
        questions = random.Random(seed).sample(questions, sample)
    return passages, questions


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_essays(eval_dir: Path) -> list[Passage]:
    """The needle-in-a-haystack essays, one passage per file (sorted by name)."""
    files = sorted((eval_dir / "needle" / "essays").glob("*.txt"))
    return [Passage(f.stem, f.stem, f.read_text()) for f in files]


# timing ------------------------------------------------------------------------------------
@dataclass
class Stopwatch:
    """Wall-clock seconds of a `with` block."""

    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


class ReplayEmbedder:
    """Quarry's embedder with the model call replaced by a lookup of vectors computed
    before: a Library using it does everything it does, less running the model."""

    def __init__(self, real: Any, vectors: dict[str, np.ndarray]) -> None:
        self.real = real
        self.vectors = vectors
        self.name = real.name
        self.dimension = real.dimension
        self.token_ids = real.token_ids

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:  # texts not computed before (ingest's answer-candidate sentences): the real model
            self.vectors.update(zip(missing, self.real.encode(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


# output ------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table; floats with three decimals unless already formatted."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    Console(width=160).print(table)


def say(message: str) -> None:
    """A progress line on stderr, timestamped."""
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_json(name: str, args: argparse.Namespace, results: dict[str, Any]) -> Path:
    """Write results with the arguments and environment to benchmarks/results/<name>.json."""
    path: Path = args.output or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": environment(),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2))
    say(f"wrote {path}")
    return path
