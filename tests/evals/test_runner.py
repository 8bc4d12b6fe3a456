"""End to end: a tiny corpus ingested by a real Library (bundled embedding model), every
system side by side in extractive mode, reports written; an interrupted run resumed; the
`quarry eval` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarry.core.settings import get_settings
from quarry.evals import EvalConfig, EvalProgress, run_eval
from quarry.evals.errors import EvalError, RunDirError
from quarry.evals.rundir import RunDir
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document

CORPUS = [
    ("eiffel", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889."),
    (
        "bigben",
        "Big Ben",
        "Big Ben is the nickname of the Great Bell of the clock at Westminster. It was cast in 1859.",
    ),
    ("overdrive", "Maximum Overdrive", "Maximum Overdrive is a 1986 horror film written and directed by Stephen King."),
    ("leland", "Leland", "Leland is a town in North Carolina. The film Maximum Overdrive was shot near Leland."),
    ("alpha", "Alpha", "Alpha is the first letter of the Greek alphabet. It stands for beginnings."),
    ("beta", "Beta", "Beta is the second letter of the Greek alphabet, used in finance for volatility."),
    ("tea", "Green tea", "Green tea is made from unoxidised leaves of Camellia sinensis."),
    ("whale", "Blue whale", "Blue whales are the largest animals ever known to have lived."),
]
QUESTIONS = [
    {
        "id": "q1",
        "question": "When was the Eiffel Tower completed?",
        "answers": ["1889"],
        "gold": ["Eiffel Tower"],
        "gold_facts": ["It was completed in 1889."],
    },
    {
        "id": "q2",
        "question": "Who directed the film Maximum Overdrive?",
        "answers": ["Stephen King"],
        "gold": ["overdrive"],
    },
    {
        "id": "q3",
        "question": "Which letter comes first in the Greek alphabet?",
        "choices": ["Beta", "Alpha"],
        "answers": ["B"],
        "gold": ["alpha"],
    },
    {"id": "q4", "question": "What are blue whales known for?", "answers": ["largest animals"], "gold": ["whale"]},
]
SYSTEMS = ["dense", "bm25", "hybrid", "llamaindex", "agent", "hybrid-no-reorder"]


@pytest.fixture
def qa_dir(tmp_path: Path) -> Path:
    root = tmp_path / "qa"
    root.mkdir()
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS)
    )
    (root / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return root


def _config(qa_dir: Path, **overrides: object) -> EvalConfig:
    return EvalConfig.model_validate({"dataset": "jsonl", "path": qa_dir / "qa.jsonl", "ks": [1, 2, 5], **overrides})


def test_systems_side_by_side(qa_dir: Path, library: Library, tmp_path: Path) -> None:
    events: list[EvalProgress] = []
    report = run_eval(
        _config(qa_dir, systems=SYSTEMS), library=library, out=tmp_path / "runs", on_progress=events.append
    )
    assert list(report.systems) == SYSTEMS
    run_dir = Path(report.run_dir)
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("jsonl-")
    for name in ("config.json", "items.jsonl", "report.json", "report.md", "recall_at_k.png", "latency.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "recall_at_k.png").read_bytes().startswith(b"\x89PNG")
    records = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()]
    assert len(records) == len(QUESTIONS) * len(SYSTEMS) and not any(r["error"] for r in records)

    for name, summary in report.systems.items():
        assert summary.items == 4 and summary.errors == 0, name
        assert summary.metrics["recall@5"] == 1.0, name  # eight documents: the gold one is always near the top
        assert summary.counts["em"] == 3 and summary.counts["choice"] == 1, name
        assert 0 <= summary.metrics["f1"] <= 1 and 0 <= summary.metrics["cite_precision"] <= 1
        assert {"retrieve", "total"} <= set(summary.latency), name
    hybrid = report.systems["hybrid"].metrics
    assert hybrid["recall@1"] == 1.0 and hybrid["mrr"] == 1.0
    assert set(report.systems["agent"].latency) == {"plan", "retrieve", "read", "write", "total"}
    assert report.systems["agent"].prompt_tokens == 0  # extractive: no model, no tokens

    by_item = {(r["system"], r["item"]): r for r in records}
    eiffel = by_item[("hybrid", "q1")]
    assert eiffel["ranked"][0] == "eiffel" and eiffel["cited"] == ["eiffel"]  # corpus ids, from titles as gold
    assert eiffel["scores"]["em"] == 1.0 and eiffel["prediction"] == "1889"
    assert eiffel["scores"]["cite_precision"] == 1.0 and eiffel["scores"]["cite_recall"] == 1.0
    assert by_item[("agent", "q2")]["scores"]["contains"] == 1.0

    stages = {e.stage for e in events}
    assert {"load", "ingest", "index", "answer", "report"} <= stages
    last = [e for e in events if e.stage == "answer"][-1]
    assert (last.done, last.total) == (len(QUESTIONS) * len(SYSTEMS), len(QUESTIONS) * len(SYSTEMS))

    markdown = (run_dir / "report.md").read_text()
    assert "| hybrid-no-reorder |" in markdown and "![Recall vs k](recall_at_k.png)" in markdown
    assert json.loads((run_dir / "report.json").read_text())["systems"]["agent"]["items"] == 4

    # the same eval again: same run directory, nothing re-run, the same numbers
    again = run_eval(_config(qa_dir, systems=SYSTEMS), library=library, out=tmp_path / "runs")
    assert again.run_dir == report.run_dir and again.systems == report.systems


class Crash(Exception):
    pass


def test_interrupted_run_resumes(qa_dir: Path, library: Library, tmp_path: Path) -> None:
    config = _config(qa_dir, systems=["bm25", "agent"])
    answered: list[int] = []

    def crash_after_three(event: EvalProgress) -> None:
        if event.stage == "answer" and event.done:
            answered.append(event.done)
            if event.done == 3:
                raise Crash

    with pytest.raises(Crash):
        run_eval(config, library=library, out=tmp_path / "runs", on_progress=crash_after_three)
    [run_dir] = (tmp_path / "runs").iterdir()
    items = run_dir / "items.jsonl"
    assert len(items.read_text().splitlines()) == 3 and not (run_dir / "report.json").exists()
    with items.open("a") as f:
        f.write('{"system": "agent", "item": "q2", "scor')  # a line cut off by the crash

    events: list[EvalProgress] = []
    report = run_eval(None, library=library, run_dir=run_dir, on_progress=events.append)
    first = next(e for e in events if e.stage == "answer")
    assert (first.done, first.total) == (3, 8)  # continued after the three it had
    lines = items.read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line) for line in lines)
    assert len({(json.loads(line)["system"], json.loads(line)["item"]) for line in lines}) == 8
    assert report.systems["bm25"].items == 4 and report.systems["agent"].items == 4


def test_run_directory_guards(qa_dir: Path, library: Library, tmp_path: Path) -> None:
    setup = {"config": {"dataset": "jsonl"}, "settings": {}}
    with RunDir.open(tmp_path / "run", setup), pytest.raises(RunDirError, match="another eval is running"):
        RunDir.open(tmp_path / "run", setup)
    with pytest.raises(RunDirError, match="another configuration"):
        RunDir.open(tmp_path / "run", {**setup, "settings": {"chunk_size": 1}})
    RunDir.open(tmp_path / "run", {**setup, "settings": {"chunk_size": 1}}, fresh=True).close()
    with pytest.raises(EvalError, match="no collection named 'nope'"):
        run_eval(_config(qa_dir, systems=["bm25"], collection="nope"), library=library, out=tmp_path)
    with pytest.raises(ValueError, match="unknown system 'bm26'"):
        _config(qa_dir, systems=["bm26"])


def test_existing_collection_and_gold_by_source_name(qa_dir: Path, library: Library, tmp_path: Path) -> None:
    """Against a collection ingested by the user: gold matches source names, titles or record ids."""
    library.ingest_documents("mine", [text_document(x, name=f"kb/{i}.txt", title=t) for i, t, x in CORPUS])
    (qa_dir / "user.jsonl").write_text(
        json.dumps({"question": "When was the Eiffel Tower completed?", "answers": ["1889"], "gold": ["eiffel"]})
        + "\n"
        + json.dumps({"question": "What is green tea made from?", "gold": ["kb/tea.txt"]})
        + "\n"
    )
    config = EvalConfig(
        dataset="jsonl", path=qa_dir / "user.jsonl", corpus=None, collection="mine", systems=["hybrid"], ks=[1]
    )
    # corpus.jsonl beside the file is picked up, but -c wins: questions run against "mine"
    report = run_eval(config, library=library, out=tmp_path / "runs")
    assert report.systems["hybrid"].metrics["recall@1"] == 1.0
    records = [json.loads(line) for line in (Path(report.run_dir) / "items.jsonl").read_text().splitlines()]
    assert records[0]["ranked"][0] == "kb/eiffel.txt"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli(workdir: Path, qa_dir: Path) -> None:
    import quarry.cli.eval  # noqa: F401  (registers `eval`)
    from quarry.cli import app

    runner = CliRunner()
    args = [
        "eval",
        "--dataset",
        "jsonl",
        "--path",
        str(qa_dir / "qa.jsonl"),
        "--systems",
        "bm25,hybrid",
        "--k",
        "1,3",
        "--limit",
        "3",
        "--out",
        "runs",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "bm25" in result.stdout and "R@3" in result.stdout and "report.md" in result.stdout
    result = runner.invoke(app, [*args, "--json"])
    payload = json.loads(result.stdout)
    assert payload["items"] == 3 and set(payload["systems"]) == {"bm25", "hybrid"}
    run_dir = Path(payload["run_dir"])
    assert run_dir.parent == workdir / "runs"
    assert runner.invoke(app, ["eval", "--resume", str(run_dir), "--json"]).exit_code == 0

    result = runner.invoke(app, ["eval", "--dataset", "jsonl", "--path", str(qa_dir / "qa.jsonl"), "--k", "0"])
    assert result.exit_code == 2 and "k values must be between 1 and 1000" in result.stderr
    (qa_dir / "bad.jsonl").write_text('{"question": "fine"}\n{"question": \n')
    result = runner.invoke(app, ["eval", "--dataset", "jsonl", "--path", str(qa_dir / "bad.jsonl")])
    assert result.exit_code == 1 and "bad.jsonl line 2: malformed JSON" in result.stderr
    result = runner.invoke(app, ["eval", "--path", "x"])
    assert result.exit_code == 2 and "--dataset" in result.stderr


def test_llm_reader_counts_tokens(qa_dir: Path, library: Library, tmp_path: Path) -> None:
    """With a chat model (a scripted one here), answers are written by it and tokens counted."""
    from quarry.evals.report import latency_rows
    from tests.agents.scripted import ScriptedModel

    question = QUESTIONS[1]["question"]
    (qa_dir / "one.jsonl").write_text(json.dumps(QUESTIONS[1]) + "\n")
    plan = {"ops": [{"op": "add_node", "id": "n1", "question": question, "parents": []}]}
    model = ScriptedModel(plan, {question: "Stephen King"}, writer="Stephen King directed it [1].")
    config = EvalConfig(
        dataset="jsonl",
        path=qa_dir / "one.jsonl",
        corpus=qa_dir / "corpus.jsonl",
        systems=["hybrid", "agent"],
        ks=[1],
        reader="llm",
    )
    report = run_eval(config, library=library, out=tmp_path / "runs", model=model)  # type: ignore[arg-type]
    single, agent = report.systems["hybrid"], report.systems["agent"]
    assert (single.prompt_tokens, single.completion_tokens) == (20, 7)  # one streamed writer call
    assert agent.prompt_tokens > 20 and agent.completion_tokens > 7  # planner, searcher and writer calls
    assert single.metrics["contains"] == 1.0 and single.metrics["f1"] == pytest.approx(2 / 3)
    assert agent.metrics["em"] == 1.0  # the node's answer is the short answer
    assert single.metrics["cite_precision"] == 1.0
    header, _ = latency_rows(report)
    assert header[-1].startswith("tokens/q")
