"""benchmarks/gpu_check.py runs here on the CPU at tiny sizes and writes its one JSON."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_gpu_check_runs_small_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "gpu_check.json"
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    argv = ["gpu_check.py", "--device", "cpu", "--lengths", "1024", "--texts", "8", "--output", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(BENCHMARKS / "gpu_check.py"), run_name="__main__")
    report = json.loads(out.read_text())["results"]
    assert report["device"]["device"] == "cpu" and report["device"]["name"]
    checks = {(c["check"], c["dtype"]): c for c in report["memory"]}
    assert len(checks) == 8 and all(c["passed"] for c in checks.values()), checks
    assert checks[("infllm-all-units=full (llama)", "float32")]["relative_error"] < 1e-4
    systems = {r["system"] for r in report["attention"] if r["context"] == 1024}
    assert {"exact-sdpa", "squeezed-hier", "infllm-blocks"} <= systems
    assert all(r["texts_per_s"] > 0 for r in report["embedding"])
    assert report["passed"] is True
