"""Regenerate docs/benchmarks.md from the shared eval data, the `quarry eval` runs under
benchmarks/results/ and the JSON the benchmarks/ scripts write there:

    .venv/bin/python -m quarry.evals.benchmarks_doc               # render what exists
    .venv/bin/python -m quarry.evals.benchmarks_doc --run-evals   # first run the standard evals

Every benchmarks/results/*.json is included: known ones with a line on what they measure,
any other in the same generic layout (tables where a dict holds rows of numbers)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quarry.evals.report import EvalReport, latency_rows, markdown_table, natural_key, quality_rows

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EVAL_DIR = ROOT.parent / "shared" / "eval"
DEFAULT_RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"

_ABOUT = {
    "retrieval_quality": "Does hybrid retrieval find the right documents? Quarry dense, BM25 and hybrid against "
    "llama-index's default vector retriever, same embedding model, scored per document.",
    "ingest_throughput": "How close is ingestion to the speed of the embedding model? Chunks per second of "
    "Quarry's ingestion against raw `encode` and a llama-index ingestion pipeline.",
    "search_latency": "How fast is a search as collections grow? p50/p95 of `Library.search` per mode at "
    "growing collection sizes (synthetic vectors; only time is measured).",
}


# the shared eval data ---------------------------------------------------------------------------
def data_section(eval_dir: Path) -> list[str]:
    from quarry.evals.datasets import load_dataset

    out = [
        "## Eval data",
        "",
        f"Public QA data in `{_rel(eval_dir)}` (see its README for sources and licences), as Quarry's loaders "
        "read it (`quarry eval --dataset NAME --path ...`).",
        "",
    ]
    rows = []
    for name, folder in (("hotpotqa", "hotpotqa"), ("squad", "squad"), ("needle", "needle")):
        path = eval_dir / folder
        if not path.exists():
            continue
        ds = load_dataset(name, path)
        words = [len(d.text.split()) for d in ds.corpus]
        groups: dict[str, int] = {}
        for item in ds.items:
            if item.group:
                groups[item.group] = groups.get(item.group, 0) + 1
        mix = ", ".join(f"{g}: {n}" for g, n in sorted(groups.items(), key=lambda kv: natural_key(kv[0])))
        gold = sum(len(i.gold) for i in ds.items) / len(ds.items)
        rows.append(
            [
                name,
                f"{len(ds.items):,}",
                f"{len(ds.corpus):,}",
                f"{statistics.mean(words):,.0f}",
                f"{gold:.1f}" if gold else "facts",
                mix or "; ".join(ds.notes),
            ]
        )
    known = ("hotpotqa", "squad", "needle")
    others = sorted(p.name for p in eval_dir.iterdir() if p.is_dir() and p.name not in known) if rows else []
    if not rows:
        return [*out, f"No eval data found in `{eval_dir}`.", ""]
    out.append(markdown_table(["dataset", "questions", "documents", "words/doc", "gold docs/q", "mix / notes"], rows))
    out.append("")
    out.append(
        "Needle documents are the default grid (haystack lengths × needle depths); `--needle-lengths` and "
        "`--needle-depths` change it."
    )
    if others:
        out.append(f"Other folders, not read by a loader: {', '.join(others)}.")
    return [*out, ""]


# quarry eval runs -------------------------------------------------------------------------------
def eval_section(results_dir: Path) -> list[str]:
    reports = []
    for path in sorted(results_dir.glob("**/report.json")):
        try:
            reports.append(EvalReport.model_validate_json(path.read_text()))
        except ValueError as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
    out = ["## quarry eval", ""]
    if not reports:
        return [
            *out,
            f"No eval runs under `{_rel(results_dir)}` yet: run `quarry eval ... --out "
            f"{_rel(results_dir)}/evals` or this script with `--run-evals`.",
            "",
        ]
    out += [
        "Systems side by side on the same collection: single-shot retrieve-then-read over Quarry's dense, BM25 "
        "and hybrid retrieval and over llama-index's default vector retriever (same embedding model), and the "
        "agent graph. See [evaluation.md](evaluation.md) for the metrics.",
        "",
    ]
    for report in sorted(reports, key=lambda r: (r.dataset, r.finished_at)):
        cfg, env = report.config, report.environment
        out += [
            f"### {report.dataset}: {report.items:,} of {report.items_in_dataset:,} questions ({report.run})",
            "",
            f"{report.corpus_documents:,} documents; {cfg.get('reader')} reader; reranking "
            f"{'on' if cfg.get('rerank') else 'off'}, reordering {'on' if cfg.get('reorder') else 'off'}; "
            f"{'first' if cfg.get('first') else 'sample with seed ' + str(cfg.get('seed'))} when limited. "
            f"{env.get('cpu_count')} CPUs, GPU {env.get('gpu') or 'none'}, load average "
            f"{_load(env.get('load_average'))}; {report.finished_at}.",
            "",
            markdown_table(*quality_rows(report, "retrieval")),
            "",
            markdown_table(*quality_rows(report, "answers")),
            "",
            markdown_table(*latency_rows(report)),
            "",
        ]
        out += [f"- {n}" for n in report.notes] + ([""] if report.notes else [])
    return out


# benchmarks/ scripts ----------------------------------------------------------------------------
def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _load(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
    return "?" if value is None else str(value)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key} "))
        elif _scalar(value):
            flat[f"{prefix}{key}"] = value
    return flat


def row_tables(key: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    """A dict of rows as tables: the rows' numbers in one, and each nested dict of the rows
    in its own (a dict of dicts pivoted into one row per inner key)."""
    out: list[str] = []
    scalar_cols = list(dict.fromkeys(c for row in rows.values() for c, v in row.items() if _scalar(v)))
    if scalar_cols:
        body = [[name, *(_fmt(row.get(c, "")) for c in scalar_cols)] for name, row in rows.items()]
        out += [f"{key}:", "", markdown_table([key.rstrip("s") or key, *scalar_cols], body), ""]
    nested = list(dict.fromkeys(c for row in rows.values() for c, v in row.items() if isinstance(v, dict)))
    for col in nested:
        flat: dict[str, dict[str, Any]] = {}
        for name, row in rows.items():
            value = row.get(col)
            if not isinstance(value, dict):
                continue
            if value and all(isinstance(v, dict) for v in value.values()):
                flat.update({f"{name} {inner}": _flatten(v) for inner, v in value.items()})
            else:
                flat[name] = _flatten(value)
        columns = list(dict.fromkeys(c for row in flat.values() for c in row))
        body = [[name, *(_fmt(row.get(c, "")) for c in columns)] for name, row in flat.items()]
        out += [f"{key}, {col}:", "", markdown_table([key.rstrip("s") or key, *columns], body), ""]
    return out


def generic(results: Any, heading: str, level: int = 3) -> list[str]:
    """Scalars on one line, lists of strings as bullets, a dict of dicts as tables, other
    dicts as subsections."""
    out: list[str] = []
    if not isinstance(results, dict):
        return [f"- {heading}: {_fmt(results)}", ""] if _scalar(results) else []
    scalars = {k: v for k, v in results.items() if _scalar(v)}
    tables = {
        k: v for k, v in results.items() if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values())
    }
    lists = {k: v for k, v in results.items() if isinstance(v, list) and all(isinstance(x, str) for x in v)}
    records = {k: v for k, v in results.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    if scalars:
        out.append("; ".join(f"{k}: {_fmt(v)}" for k, v in scalars.items()))
        out.append("")
    for key, rows in tables.items():
        out += row_tables(key, rows)
    for lines in lists.values():
        out += [*(f"- {line}" for line in lines), ""]
    for key, items in records.items():  # a list of rows: one table, columns in first-seen order
        flat = [_flatten(x) for x in items]
        columns = list(dict.fromkeys(c for row in flat for c in row))
        out += [f"{key}:", "", markdown_table(columns, [[_fmt(r.get(c, "")) for c in columns] for r in flat]), ""]
    for key, value in results.items():
        if isinstance(value, dict) and key not in tables:
            out += [f"{'#' * level} {key}", "", *generic(value, key, level + 1)]
    return out


def scripts_section(results_dir: Path) -> list[str]:
    out = ["## Benchmark scripts", ""]
    files = sorted(results_dir.glob("*.json"))
    if not files:
        return [*out, f"No results in `{_rel(results_dir)}` yet: run `make bench`.", ""]
    out += ["Written by the scripts in `benchmarks/` (see benchmarks/README.md for what each does).", ""]
    for path in files:
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            print(f"skipping {path}: malformed JSON ({exc.msg})", file=sys.stderr)
            continue
        name = str(payload.get("benchmark", path.stem)) if isinstance(payload, dict) else path.stem
        out += [f"### {name}" + (f" ({path.name})" if path.stem != name else ""), ""]
        if name in _ABOUT:
            out += [_ABOUT[name], ""]
        if isinstance(payload, dict) and "results" in payload:
            env = payload.get("environment") or {}
            args = payload.get("args") or {}
            shown = {k: v for k, v in args.items() if k not in ("eval_dir", "output")}
            out += [
                f"Finished {payload.get('finished_at', '?')}; {env.get('cpu_count', '?')} CPUs, torch threads "
                f"{env.get('torch_threads', '?')}, load average {_load(env.get('load_average'))}; arguments: "
                + ", ".join(f"{k}={v}" for k, v in shown.items()),
                "",
            ]
            out += generic(payload["results"], name, 4)
        else:
            out += generic(payload, name, 4)
    return out


# the page ---------------------------------------------------------------------------------------
def render(eval_dir: Path, results_dir: Path) -> str:
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `.venv/bin/python -m quarry.evals.benchmarks_doc`; edits by hand are overwritten. -->",
        "",
        "Numbers from this repository's own runs, regenerated by one command from the shared eval data and the "
        "JSON results under `benchmarks/results/`: `.venv/bin/python -m quarry.evals.benchmarks_doc` "
        "(add `--run-evals` to run the standard `quarry eval` runs first). Times are wall-clock on whatever "
        "else the machine was doing; compare runs made on the same machine (each section gives its machine and load).",
        "",
        *data_section(eval_dir),
        *eval_section(results_dir),
        *scripts_section(results_dir),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _rel(path: Path) -> str:
    """A path as seen from the project root."""
    path = path.resolve()
    if path.is_relative_to(ROOT):
        return path.relative_to(ROOT).as_posix()
    if path.is_relative_to(ROOT.parent):
        return "../" + path.relative_to(ROOT.parent).as_posix()
    return str(path)


def run_standard_evals(eval_dir: Path, results_dir: Path, limit: int) -> None:
    """The runs docs/benchmarks.md shows: HotpotQA and SQuAD samples, the default needle grid."""
    from quarry.evals.runner import EvalConfig, run_eval

    for dataset, folder, n in (("hotpotqa", "hotpotqa", limit), ("squad", "squad", limit), ("needle", "needle", None)):
        if not (eval_dir / folder).exists():
            continue
        print(f"quarry eval --dataset {dataset} --limit {n}", file=sys.stderr)
        config = EvalConfig(dataset=dataset, path=(eval_dir / folder).resolve(), limit=n)
        run_eval(config, out=results_dir / "evals")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR, help="The shared eval data.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="benchmarks/results.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="The page to write.")
    parser.add_argument("--run-evals", action="store_true", help="Run the standard quarry eval runs first.")
    parser.add_argument("--limit", type=int, default=30, help="Questions per dataset with --run-evals.")
    args = parser.parse_args(argv)
    if args.run_evals:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        run_standard_evals(args.eval_dir, args.results, args.limit)
    kept = hand_written(args.output.read_text()) if args.output.is_file() else ""
    args.output.write_text(render(args.eval_dir, args.results) + (f"\n{kept}" if kept else ""))
    print(f"wrote {args.output}", file=sys.stderr)


HAND_MARK = "<!-- Written by hand"


def hand_written(page: str) -> str:
    """The page's hand-written sections, kept when it is regenerated: from the heading of the
    first section marked `<!-- Written by hand ... -->` (right under its heading) to the end."""
    lines = page.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(HAND_MARK):
            start = max((j for j in range(i) if lines[j].startswith("## ")), default=i)
            return "\n".join(lines[start:]).rstrip() + "\n"
    return ""


if __name__ == "__main__":
    main()
