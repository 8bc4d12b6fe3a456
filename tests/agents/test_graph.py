"""The agent graph over a real collection: planning, concurrent nodes, budgets, events,
citations; with a scripted model and in extractive mode."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.agents.events import ErrorEvent, Event, EventAdapter
from quarry.agents.graph import AgentGraph
from quarry.agents.research import Researcher
from quarry.core.types import NodeState
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from tests.agents.scripted import BrokenWriter, ScriptedModel
from tests.conftest import make_settings

FACTS = {
    "Eiffel Tower": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889.",
    "Big Ben": "Big Ben is the nickname of the Great Bell of the clock at Westminster. It was completed in 1859.",
    "Maximum Overdrive": "Maximum Overdrive is a 1986 horror film written and directed by Stephen King.",
    "Leland": "Leland is a town in North Carolina. The film Maximum Overdrive was shot in or around Leland in 1986.",
    "Nolan": "Christopher Nolan is a British-American film director known for Inception.",
    "Kalathil": "Sathish Kalathil is an Indian film director and documentary maker.",
    "Alpha": "Alpha is the first letter of the Greek alphabet. It stands for beginnings.",
    "Beta": "Beta is the second letter of the Greek alphabet, used in finance for volatility.",
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> Iterator[Library]:
    settings = make_settings(tmp_path_factory.mktemp("agents"))
    lib = Library(settings, embedder=embedder)
    lib.ingest_documents("facts", [text_document(text, name=title, title=title) for title, text in FACTS.items()])
    yield lib
    lib.close()


def _agent(library: Library, model: ScriptedModel | None = None, **agents: float) -> AgentGraph:
    settings = library.settings.model_copy(
        update={"agents": library.settings.agents.model_copy(update=agents)} if agents else {}
    )
    return AgentGraph(library, settings=settings, model=model)


def _run(agent: AgentGraph, question: str) -> tuple[object, list[object]]:
    events: list[object] = []

    async def emit(event: object) -> None:
        events.append(event)

    answer = asyncio.run(agent.ask("facts", question, emit))  # type: ignore[arg-type]
    return answer, events


PLAN = {
    "ops": [
        {"op": "add_node", "id": "a", "question": "When was the Eiffel Tower completed?", "parents": []},
        {"op": "add_node", "id": "b", "question": "When was Big Ben completed?", "parents": []},
        {"op": "add_node", "id": "c", "question": "Who directed Maximum Overdrive?", "parents": ["a"]},
        {"op": "add_edge", "source": "c", "target": "a"},
    ]
}
ANSWERS = {
    "When was the Eiffel Tower completed?": "1889",
    "When was Big Ben completed?": "1859",
    "Who directed Maximum Overdrive?": "Stephen King",
}


def test_model_plan_runs_nodes_without_barrier(library: Library) -> None:
    model = ScriptedModel(
        PLAN,
        ANSWERS,
        writer="Big Ben is older [2]. The Eiffel Tower dates from 1889 [1].",
        delays={"When was Big Ben completed?": 1.5},
    )
    answer, events = _run(_agent(library, model), "Which is older, the Eiffel Tower or Big Ben?")
    kinds = [e.type for e in events]  # type: ignore[attr-defined]
    assert kinds[0] == "plan" and kinds[-1] == "done"
    assert {"node_started", "node_evidence", "node_answer", "token", "citations"} <= set(kinds)
    first_plan = events[0]
    assert any("cycle" in r for r in first_plan.rejected)  # type: ignore[attr-defined]
    # c (child of a) started while b was still running: no per-round barrier
    order = [(e.type, getattr(e, "node_id", None) or getattr(getattr(e, "node", None), "id", None)) for e in events]
    assert order.index(("node_started", "c")) < order.index(("node_answer", "b"))
    # the child saw its parent's answer
    reads = [user for role, user in model.calls if role == "read" and "Maximum Overdrive?" in user]
    assert reads and "1889" in reads[0]
    states = {n.id: n.state for n in answer.nodes}  # type: ignore[attr-defined]
    assert states == {"a": NodeState.DONE, "b": NodeState.DONE, "c": NodeState.DONE}
    assert answer.edges == [("a", "c")]  # type: ignore[attr-defined]
    assert answer.answer.count("[") == 2 and len(answer.citations) == 2  # type: ignore[attr-defined]
    assert not answer.extractive and answer.prompt_tokens > 0  # type: ignore[attr-defined]
    for event in events:  # every event serialises and parses back
        assert EventAdapter.validate_json(EventAdapter.dump_json(event)).type == event.type  # type: ignore[attr-defined]


def test_citation_check_drops_bad_markers_and_flags_unsupported(library: Library) -> None:
    plan = {"ops": [{"op": "add_node", "id": "n1", "question": "Who directed Maximum Overdrive?", "parents": []}]}
    writer = (
        "Stephen King directed Maximum Overdrive [1]. It was shot near Leland [7]. "
        "The moon is made of green cheese and orbits Jupiter."
    )
    answer, _ = _run(_agent(library, ScriptedModel(plan, ANSWERS, writer=writer)), "Who directed Maximum Overdrive?")
    assert "[7]" not in answer.answer  # type: ignore[attr-defined]
    assert any("[7]" in note for note in answer.notes)  # type: ignore[attr-defined]
    assert [c.n for c in answer.citations] == [1]  # type: ignore[attr-defined]
    assert answer.citations[0].document in FACTS  # type: ignore[attr-defined]
    unsupported = " ".join(answer.unsupported)  # type: ignore[attr-defined]
    assert "green cheese" in unsupported and "Stephen King directed" not in unsupported


def test_planner_extends_the_graph_within_bounds(library: Library) -> None:
    plan = {"ops": [{"op": "add_node", "id": "n1", "question": "Where was Maximum Overdrive shot?", "parents": []}]}
    counter = iter(range(100))

    def extend(_user: str) -> dict:
        i = next(counter)
        return {"ops": [{"op": "add_node", "id": f"x{i}", "question": f"Follow-up number {i}?", "parents": ["n1"]}]}

    model = ScriptedModel(plan, {"Where was Maximum Overdrive shot?": "Leland"}, extend=extend)
    answer, events = _run(_agent(library, model, max_rounds=2, max_nodes=8), "Where was Maximum Overdrive shot?")
    assert [n.id for n in answer.nodes] == ["n1", "x0", "x1"]  # type: ignore[attr-defined]
    assert sum(1 for role, _ in model.calls if role == "extend") == 2


def test_wall_clock_budget_answers_with_what_was_found(library: Library) -> None:
    plan = {
        "ops": [
            {"op": "add_node", "id": "fast", "question": "Who directed Maximum Overdrive?", "parents": []},
            {"op": "add_node", "id": "slow", "question": "When was Big Ben completed?", "parents": []},
        ]
    }
    model = ScriptedModel(plan, ANSWERS, writer="Stephen King [1].", delays={"When was Big Ben completed?": 30})
    started = time.perf_counter()
    answer, _ = _run(_agent(library, model, wall_time_s=4.0), "Who directed it, and when was Big Ben done?")
    assert time.perf_counter() - started < 20
    assert answer.partial  # type: ignore[attr-defined]
    states = {n.id: n.state for n in answer.nodes}  # type: ignore[attr-defined]
    assert states["fast"] is NodeState.DONE and states["slow"] is NodeState.FAILED
    assert any("budget" in n for n in answer.notes)  # type: ignore[attr-defined]
    assert answer.answer.startswith("Stephen King")  # type: ignore[attr-defined]


def test_extractive_comparison(library: Library) -> None:
    answer, _ = _run(_agent(library), "Which is older, the Eiffel Tower or Big Ben?")
    assert answer.extractive and answer.short_answer == "Big Ben"  # type: ignore[attr-defined]
    assert len(answer.nodes) == 2 and all(n.state is NodeState.DONE for n in answer.nodes)  # type: ignore[attr-defined]
    assert {c.document for c in answer.citations} == {"Eiffel Tower", "Big Ben"}  # type: ignore[attr-defined]
    assert "Extractive answer" in answer.answer  # type: ignore[attr-defined]
    yes, _ = _run(_agent(library), "Are Christopher Nolan and Sathish Kalathil both film directors?")
    assert yes.short_answer == "yes"  # type: ignore[attr-defined]


def test_extractive_bridge_takes_a_second_hop(library: Library) -> None:
    answer, _ = _run(_agent(library), "Who directed the film that was shot in or around Leland in 1986?")
    nodes = answer.nodes  # type: ignore[attr-defined]
    assert nodes[0].id == "n1" and all(n.parents for n in nodes[1:])
    assert nodes[1].parents == ["n1"] and "Maximum Overdrive" in nodes[1].question  # the best bridge goes first
    assert answer.short_answer == "Stephen King"  # type: ignore[attr-defined]
    for citation in answer.citations:  # type: ignore[attr-defined]
        text = library.store.document_text(citation.document_id)
        assert citation.span_start is not None and citation.span_end is not None
        assert text[citation.span_start : citation.span_end] in citation.snippet


def test_not_found(library: Library) -> None:
    plan = {"ops": [{"op": "add_node", "id": "n1", "question": "What is the airspeed of a swallow?", "parents": []}]}
    answer, _ = _run(_agent(library, ScriptedModel(plan, {}, writer="I could not find it.")), "Swallow airspeed?")
    assert answer.nodes[0].state is NodeState.NOT_FOUND  # type: ignore[attr-defined]


def test_stream_yields_events_and_errors(library: Library) -> None:
    agent = _agent(library)

    async def collect(collection: str) -> list[str]:
        return [e.type async for e in agent.stream(collection, "When was Big Ben completed?")]

    kinds = asyncio.run(collect("facts"))
    assert kinds[0] == "plan" and kinds[-1] == "done" and "token" in kinds
    assert asyncio.run(collect("missing")) == ["error"]


def test_stream_ends_with_an_error_event_and_logs_an_unexpected_exception(
    library: Library, caplog: pytest.LogCaptureFixture
) -> None:
    question = "When was Big Ben completed?"
    plan = {"ops": [{"op": "add_node", "id": "a", "question": question, "parents": []}]}
    agent = _agent(library, BrokenWriter(plan, {question: "1859"}))

    async def collect() -> list[Event]:
        return [e async for e in agent.stream("facts", question)]

    with caplog.at_level(logging.ERROR, logger="quarry.agents"):
        events = asyncio.run(collect())
    last = events[-1]
    assert events[0].type == "plan" and isinstance(last, ErrorEvent), [e.type for e in events]
    assert last.error == "RuntimeError" and last.node_id is None and "internal error" in last.message
    logged = [r for r in caplog.records if r.name == "quarry.agents" and r.exc_info]
    assert logged and "a bug in the writer" in str(logged[0].exc_info[1])  # type: ignore[index]


def test_research_report_numbers_citations_across_sections(library: Library, tmp_path: Path) -> None:
    researcher = Researcher(_agent(library))
    progress: list[tuple[int, int]] = []
    report = asyncio.run(
        researcher.run(
            "facts",
            questions=["When was the Eiffel Tower completed?", "When was Big Ben completed?", "What is Alpha?"],
            on_progress=lambda done, total, _s: progress.append((done, total)),
        )
    )
    assert progress == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [r.n for r in report.references] == list(range(1, len(report.references) + 1))
    assert len({r.chunk_id for r in report.references}) == len(report.references)
    cited = [n for s in report.sections for n in s.citations]
    assert set(cited) == {r.n for r in report.references}
    markdown = report.markdown()
    assert markdown.startswith("# Research report") and "## References" in markdown
    assert "## 2. When was Big Ben completed?" in markdown
    topical = asyncio.run(Researcher(_agent(library), max_sections=3).run("facts", topic="Greek alphabet"))
    assert 1 <= len(topical.sections) <= 3 and topical.topic == "Greek alphabet"
    with pytest.raises(ValueError):
        asyncio.run(researcher.run("facts"))


def test_reordering_for_the_model_can_be_switched_off(library: Library) -> None:
    import re

    from quarry.retrieval.reorder import reorder_for_reader

    plan = {"ops": [{"op": "add_node", "id": "a", "question": "Which letters begin the Greek alphabet?"}]}

    def titles(model: ScriptedModel, role: str) -> list[str]:
        user = next(u for r, u in model.calls if r == role)
        return re.findall(r"^\[\d+\] (.+?) \(", user, flags=re.MULTILINE)

    runs = {}
    for reorder in (True, False):
        model = ScriptedModel(plan, {"Which letters begin the Greek alphabet?": "Alpha and Beta"})
        _run(_agent(library, model, reorder=reorder), "Which letters begin the Greek alphabet?")
        runs[reorder] = {role: titles(model, role) for role in ("read", "write")}
    for role in ("read", "write"):
        in_rank_order = runs[False][role]
        assert len(in_rank_order) >= 3
        # on: best first, second best last (Jin et al. 2024); off: the order retrieval gave
        assert runs[True][role] == reorder_for_reader(in_rank_order)
        assert runs[True][role] != in_rank_order
