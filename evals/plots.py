"""Plots of a report (matplotlib, Agg backend): recall vs k per system, and the latency
distribution per system with the median of each stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quarry.evals.report import EvalReport

_STAGES = ("plan", "retrieve", "read", "write")


def write_plots(report: EvalReport, records: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """recall_at_k.png (when retrieval was scored) and latency.png; name -> path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: dict[str, Path] = {}
    ks = report.ks
    systems = [n for n, s in report.systems.items() if any(f"recall@{k}" in s.metrics for k in ks)]
    if systems and ks:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for name in systems:
            metrics = report.systems[name].metrics
            points = [(k, metrics[f"recall@{k}"]) for k in ks if f"recall@{k}" in metrics]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k (documents)")
        ax.set_ylabel("recall@k")
        ax.set_title(f"{report.dataset}: recall vs k ({report.items} questions)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        written["recall"] = out / "recall_at_k.png"
        fig.savefig(written["recall"], dpi=120)
        plt.close(fig)

    names = list(report.systems)
    totals = {
        n: [
            1000 * float(r["timings"]["total"])
            for r in records
            if r["system"] == n and not r.get("error") and "total" in r.get("timings", {})
        ]
        for n in names
    }
    names = [n for n in names if totals[n]]
    if names:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        left.boxplot([totals[n] for n in names], showfliers=True)
        left.set_xticks(range(1, len(names) + 1), names, rotation=20)
        left.set_yscale("log")
        left.set_ylabel("ms per question")
        left.set_title("total latency")
        left.grid(alpha=0.3, axis="y")
        bottom = [0.0] * len(names)
        for stage in _STAGES:
            values = [
                report.systems[n].latency[stage].p50_ms if stage in report.systems[n].latency else 0.0 for n in names
            ]
            if any(values):
                right.bar(names, values, bottom=bottom, label=stage)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        right.set_ylabel("p50 ms")
        right.set_title("median time per stage")
        right.tick_params(axis="x", rotation=20)
        right.legend()
        fig.tight_layout()
        written["latency"] = out / "latency.png"
        fig.savefig(written["latency"], dpi=120)
        plt.close(fig)
    return written
