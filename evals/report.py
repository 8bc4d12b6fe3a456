"""An eval's report: per-system means, latency percentiles per stage, tokens, breakdowns by
group; rendered as terminal tables, JSON and markdown with plots."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from quarry.evals.metrics import latency_summary
from quarry.evals.types import Dataset, QAItem

STAGES = ("plan", "retrieve", "read", "write", "total")
_ANSWER_METRICS = ("em", "f1", "contains", "choice")
_CITATION_METRICS = ("cite_precision", "cite_recall", "citations")
_LABELS = {
    "mrr": "MRR",
    "em": "EM",
    "f1": "F1",
    "contains": "Contains",
    "choice": "MC acc",
    "cite_precision": "Cite P",
    "cite_recall": "Cite R",
    "citations": "Cites/q",
}


class Latency(BaseModel):
    p50_ms: float
    p95_ms: float
    mean_ms: float
    n: int


class SystemSummary(BaseModel):
    items: int = Field(description="Items answered without error.")
    errors: int = 0
    metrics: dict[str, float] = Field(default_factory=dict, description="Means over the items each applies to.")
    counts: dict[str, int] = Field(default_factory=dict, description="Items each metric was computed over.")
    latency: dict[str, Latency] = Field(default_factory=dict, description="Per stage (plan/retrieve/read/write/total).")
    prompt_tokens: int = 0
    completion_tokens: int = 0


class EvalReport(BaseModel):
    """Everything a run measured, as written to report.json."""

    run: str
    run_dir: str
    dataset: str
    source: str
    corpus_documents: int
    items_in_dataset: int
    items: int
    config: dict[str, Any]
    notes: list[str] = Field(default_factory=list)
    systems: dict[str, SystemSummary] = Field(default_factory=dict)
    groups: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="system -> group -> headline metric -> mean"
    )
    errors: list[dict[str, str]] = Field(default_factory=list, description="The first item errors.")
    environment: dict[str, Any] = Field(default_factory=dict)
    finished_at: str = ""
    seconds: float = 0.0

    @property
    def ks(self) -> list[int]:
        return [int(k) for k in self.config.get("ks", [])]

    def metric_names(self) -> list[str]:
        """The metrics present, in display order."""
        present = {m for s in self.systems.values() for m in s.metrics}
        order = [f"recall@{k}" for k in self.ks] + [f"all@{k}" for k in self.ks] + ["mrr"]
        order += [*_ANSWER_METRICS, *_CITATION_METRICS]
        return [m for m in order if m in present]


def label(metric: str) -> str:
    return _LABELS.get(metric) or metric.replace("recall@", "R@").replace("all@", "All@")


DISTRIBUTIONS = ("quarry", "torch", "sentence-transformers", "faiss-cpu", "bm25s", "llama-index-core")


def environment(extra: Sequence[str] = ()) -> dict[str, Any]:
    """What the numbers depend on: machine, load, threads and library versions (those of
    `extra` distributions too). Reports of `quarry eval` and benchmarks/ both use it."""
    import faiss
    import torch

    versions: dict[str, str | None] = {}
    for dist in (*DISTRIBUTIONS, *extra):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def build_report(
    records: list[dict[str, Any]],
    config: dict[str, Any],
    dataset: Dataset,
    items: Sequence[QAItem],
    run_dir: Path,
    started: float,
    notes: Sequence[str] = (),
) -> EvalReport:
    """Summarise the run's records (those of the selected items, in system order)."""
    wanted = {i.id for i in items}
    order = [str(s) for s in config.get("systems", [])]
    by_system: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec["item"] in wanted:
            by_system.setdefault(rec["system"], []).append(rec)
    names = sorted(by_system, key=lambda n: _system_order(n, order))
    report = EvalReport(
        run=run_dir.name,
        run_dir=str(run_dir),
        dataset=dataset.name,
        source=dataset.source,
        corpus_documents=len(dataset.corpus),
        items_in_dataset=len(dataset.items),
        items=len(items),
        config=config,
        notes=[*dataset.notes, *notes],
        environment=environment(),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.time() - started, 1),
    )
    max_k = max(report.ks) if report.ks else None
    headline = [m for m in (f"recall@{max_k}", f"all@{max_k}", *_ANSWER_METRICS, "cite_precision")]
    for name in names:
        recs = by_system[name]
        ok = [r for r in recs if not r.get("error")]
        summary = SystemSummary(items=len(ok), errors=len(recs) - len(ok))
        summary.metrics, summary.counts = _means(ok)
        for stage in STAGES:
            samples = [float(r["timings"][stage]) for r in ok if stage in r.get("timings", {})]
            if samples:
                s = latency_summary(samples)
                summary.latency[stage] = Latency(
                    p50_ms=s["p50_ms"], p95_ms=s["p95_ms"], mean_ms=s["mean_ms"], n=len(samples)
                )
        summary.prompt_tokens = sum(int(r.get("prompt_tokens") or 0) for r in ok)
        summary.completion_tokens = sum(int(r.get("completion_tokens") or 0) for r in ok)
        report.systems[name] = summary
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in ok:
            if r.get("group"):
                groups.setdefault(str(r["group"]), []).append(r)
        if len(groups) > 1:
            report.groups[name] = {
                g: {m: v for m, v in _means(rs)[0].items() if m in headline} | {"n": float(len(rs))}
                for g, rs in sorted(groups.items(), key=lambda kv: natural_key(kv[0]))
            }
        report.errors += [
            {"system": name, "item": r["item"], "error": str(r["error"])} for r in recs if r.get("error")
        ][: max(0, 20 - len(report.errors))]
    return report


def _system_order(name: str, order: list[str]) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders "1000 words" before "16000 words"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _means(records: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for r in records:
        for metric, value in r.get("scores", {}).items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            sums[metric] = sums.get(metric, 0.0) + float(value)
            counts[metric] = counts.get(metric, 0) + 1
    return {m: sums[m] / counts[m] for m in sums}, counts


# rendering ------------------------------------------------------------------------------------
RETRIEVAL = "retrieval"
ANSWERS = "answers"


def quality_rows(report: EvalReport, part: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the retrieval table (R@k, All@k, MRR) or the answers table
    (EM, F1, Contains, MC accuracy, citations)."""
    metrics = [
        m for m in report.metric_names() if (m.startswith(("recall@", "all@")) or m == "mrr") == (part == RETRIEVAL)
    ]
    header = ["system", "n", *(label(m) for m in metrics)]
    rows = []
    for name, s in report.systems.items():
        cells = [
            ("–" if m not in s.metrics else f"{s.metrics[m]:.2f}" if m == "citations" else f"{s.metrics[m]:.3f}")
            for m in metrics
        ]
        n = f"{s.items}" + (f" ({s.errors} err)" if s.errors else "")
        rows.append([name, n, *cells])
    return header, rows


def latency_rows(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the latency table: p50 / p95 ms per stage, tokens per question."""
    stages = [st for st in STAGES if any(st in s.latency for s in report.systems.values())]
    tokens = any(s.prompt_tokens or s.completion_tokens for s in report.systems.values())
    header = ["system", *(f"{st} p50/p95 ms" for st in stages)] + (["tokens/q (prompt+compl.)"] if tokens else [])
    rows = []
    for name, s in report.systems.items():
        row = [name]
        for st in stages:
            lat = s.latency.get(st)
            row.append(f"{lat.p50_ms:,.0f} / {lat.p95_ms:,.0f}" if lat else "–")
        if tokens:
            per_q = (s.prompt_tokens + s.completion_tokens) / s.items if s.items else 0.0
            row.append(f"{per_q:,.0f} ({s.prompt_tokens:,}+{s.completion_tokens:,})")
        rows.append(row)
    return header, rows


def group_rows(report: EvalReport, system: str) -> tuple[list[str], list[list[str]]]:
    groups = report.groups.get(system, {})
    metrics = [m for m in report.metric_names() if any(m in g for g in groups.values())]
    header = ["group", "n", *(label(m) for m in metrics)]
    rows = [[g, f"{int(v['n'])}", *(f"{v[m]:.3f}" if m in v else "–" for m in metrics)] for g, v in groups.items()]
    return header, rows


def rich_tables(report: EvalReport) -> list[Any]:
    """The quality and latency tables for the terminal."""
    from rich.table import Table

    tables = []
    title = (
        f"{report.dataset}: {report.items} of {report.items_in_dataset} questions, "
        f"{report.corpus_documents} documents ({report.config.get('reader')} reader)"
    )
    parts = [
        (f"{title}: retrieval", quality_rows(report, RETRIEVAL)),
        ("answers and citations", quality_rows(report, ANSWERS)),
        ("latency", latency_rows(report)),
    ]
    for caption, (header, rows) in parts:
        if len(header) <= 2:
            continue
        table = Table(title=caption, title_justify="left")
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: EvalReport, plots: dict[str, str] | None = None) -> str:
    """The markdown report (plots referenced by file name, beside it)."""
    cfg = report.config
    env = report.environment
    out = [
        f"# Eval: {report.dataset} ({report.run})",
        "",
        f"- Data: `{report.source}`: {report.items} of {report.items_in_dataset} questions "
        f"({'first' if cfg.get('first') else 'seeded sample, seed ' + str(cfg.get('seed'))} when limited), "
        f"{report.corpus_documents} corpus documents"
        + (f"; collection `{cfg['collection']}`" if cfg.get("collection") else ""),
        f"- Reader: {cfg.get('reader')}; reranking {'on' if cfg.get('rerank') else 'off'}, reordering "
        f"{'on' if cfg.get('reorder') else 'off'} (unless a system name says otherwise); "
        f"{cfg.get('fetch')} chunk hits per query",
        f"- Machine: {env.get('cpu_count')} CPUs, torch threads {env.get('torch_threads')}, "
        f"GPU {env.get('gpu') or 'none'}, load average {env.get('load_average')}; finished {report.finished_at}",
        "",
        "## Retrieval",
        "",
        markdown_table(*quality_rows(report, RETRIEVAL)),
        "",
        "## Answers and citations",
        "",
        markdown_table(*quality_rows(report, ANSWERS)),
        "",
        "## Latency",
        "",
        markdown_table(*latency_rows(report)),
        "",
    ]
    for name, caption in (("recall", "Recall vs k"), ("latency", "Latency per question")):
        if plots and name in plots:
            out += [f"![{caption}]({plots[name]})", ""]
    if report.groups:
        out += ["## By group", ""]
        for system in report.groups:
            out += [f"### {system}", "", markdown_table(*group_rows(report, system)), ""]
    if report.notes:
        out += ["## Notes", "", *(f"- {n}" for n in report.notes), ""]
    if report.errors:
        out += ["## Errors", "", *(f"- {e['system']} / {e['item']}: {e['error']}" for e in report.errors), ""]
    out += [METRICS_HELP]
    return "\n".join(out)


METRICS_HELP = """## Reading the tables

R@k: fraction of an item's gold documents among the first k distinct documents retrieved
(gold facts among the first k passages when an item has no gold documents); All@k: rate at
which all of them are (items with two or more); MRR: mean reciprocal rank of the first
gold hit. EM / F1: SQuAD exact match and token F1 of the short answer; Contains: the
normalised gold answer occurs in the answer; MC acc: multiple-choice letter accuracy.
Cite P: fraction of cited passages that belong to a gold document or contain a gold fact;
Cite R: fraction of gold documents (or facts) some citation covers; Cites/q: citations per
answer. Latency: p50 / p95 per stage; an agent's retrieve and read are summed over its
sub-questions, which may overlap in time.
"""


def write_outputs(report: EvalReport, run_dir: Path, records: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """report.json, report.md and the plots, in the run directory."""
    from quarry.evals.plots import write_plots

    plots = write_plots(report, records if records is not None else _read_records(run_dir), run_dir)
    (run_dir / "report.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    (run_dir / "report.md").write_text(render_markdown(report, {k: v.name for k, v in plots.items()}))
    return {"json": run_dir / "report.json", "markdown": run_dir / "report.md", **plots}


def _read_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "items.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
