"""docs/benchmarks.md is rendered from the eval data, eval runs and benchmark JSON found."""

from __future__ import annotations

import json
from pathlib import Path

from quarry.evals.benchmarks_doc import main, render
from quarry.evals.report import EvalReport, Latency, SystemSummary
from tests.evals.test_datasets import HOTPOT


def test_render_everything_found(tmp_path: Path) -> None:
    eval_dir = tmp_path / "eval"
    (eval_dir / "hotpotqa").mkdir(parents=True)
    (eval_dir / "hotpotqa" / "train.json").write_text(json.dumps(HOTPOT))
    (eval_dir / "other").mkdir()
    results = tmp_path / "results"
    (results / "evals" / "hotpotqa-abc").mkdir(parents=True)
    report = EvalReport(
        run="hotpotqa-abc",
        run_dir="x",
        dataset="hotpotqa",
        source="train.json",
        corpus_documents=3,
        items_in_dataset=2,
        items=2,
        config={"ks": [1, 5], "reader": "extractive", "rerank": True, "reorder": True},
        systems={
            "hybrid": SystemSummary(
                items=2,
                metrics={"recall@1": 0.5, "recall@5": 1.0, "em": 0.25},
                latency={"total": Latency(p50_ms=12, p95_ms=30, mean_ms=15, n=2)},
            )
        },
        notes=["a note"],
    )
    (results / "evals" / "hotpotqa-abc" / "report.json").write_text(report.model_dump_json())
    (results / "retrieval_quality.json").write_text(
        json.dumps(
            {
                "benchmark": "retrieval_quality",
                "finished_at": "2026-01-01",
                "args": {"seed": 0},
                "environment": {"cpu_count": 2},
                "results": {
                    "hotpotqa": {
                        "questions": 100,
                        "systems": {"quarry-hybrid": {"recall@1": 0.415, "mrr": 0.9}},
                        "verdict": ["hybrid vs dense: better"],
                    }
                },
            }
        )
    )
    (results / "search_latency.json").write_text(
        json.dumps(
            {
                "benchmark": "search_latency",
                "results": {
                    "sizes": {"1000": {"chunks": 1000, "latency": {"hybrid": {"p50_ms": 5.25, "p95_ms": 9.0}}}},
                    "target_met": True,
                },
            }
        )
    )
    (results / "broken.json").write_text("{")

    page = render(eval_dir, results)
    assert "| hotpotqa | 2 | 3 |" in page and "bridge: 1, comparison: 1" in page
    assert "Other folders, not read by a loader: other." in page
    assert "### hotpotqa: 2 of 2 questions (hotpotqa-abc)" in page
    assert "| hybrid | 2 | 0.500 | 1.000 |" in page and "| hybrid | 12 / 30 |" in page and "- a note" in page
    assert "Does hybrid retrieval find the right documents?" in page
    assert "| quarry-hybrid | 0.415 | 0.900 |" in page and "- hybrid vs dense: better" in page
    assert "| size | chunks |\n" in page and "| 1000 | 1,000 |" in page and "target_met: True" in page
    assert "sizes, latency:" in page and "| size | p50_ms | p95_ms |" in page
    assert "| 1000 hybrid | 5.250 | 9.000 |" in page
    assert "broken" not in page

    out = tmp_path / "benchmarks.md"
    main(["--eval-dir", str(eval_dir), "--results", str(results), "--output", str(out)])
    assert out.read_text() == page


def test_render_with_nothing_yet(tmp_path: Path) -> None:
    page = render(tmp_path / "none", tmp_path / "none")
    assert "No eval data found" in page and "No eval runs" in page and "No results" in page


def test_regenerating_keeps_the_hand_written_sections(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    hand = "## Graph cost\n\n<!-- Written by hand (not generated) -->\n\n| mode | p95 |\n|---|---|\n| graph | 33 |\n"
    out.write_text(render(tmp_path / "none", tmp_path / "none") + "\n" + hand)
    main(["--eval-dir", str(tmp_path / "none"), "--results", str(tmp_path / "none"), "--output", str(out)])
    main(["--eval-dir", str(tmp_path / "none"), "--results", str(tmp_path / "none"), "--output", str(out)])
    page = out.read_text()
    assert page.endswith(hand) and page.count("## Graph cost") == 1
    assert page.startswith(render(tmp_path / "none", tmp_path / "none"))
