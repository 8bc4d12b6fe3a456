"""`quarry ask` and `quarry research`: the agent graph from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from rich.tree import Tree

from quarry.cli import CollectionOpt, JsonOpt, _fail, _library, app, err, out
from quarry.core.errors import QuarryError
from quarry.core.types import Answer, PlanNode

_STATE_STYLE = {"waiting": "dim", "running": "yellow", "done": "green", "not_found": "magenta", "failed": "red"}


def _agent(library: Any) -> tuple[Any, Any]:
    from quarry.agents.graph import AgentGraph
    from quarry.agents.llm.factory import make_chat_model

    model = make_chat_model(library.settings.llm)
    return AgentGraph(library, model=model), model


def plan_tree(question: str, nodes: list[PlanNode]) -> Tree:
    """The plan as a terminal tree: each node under its first parent."""
    tree = Tree(Text(question, style="bold"))
    branches: dict[str, Tree] = {}
    for node in nodes:  # topological order: parents come first
        label = Text(f"{node.id} ", style="bold") + Text(f"[{node.state}] ", style=_STATE_STYLE[node.state])
        label += Text(node.question)
        if node.answer:
            label += Text(f"  → {node.answer[:80]}", style="cyan")
        if len(node.parents) > 1:
            label += Text(f"  (after {', '.join(node.parents)})", style="dim")
        parent = branches.get(node.parents[0]) if node.parents else None
        branches[node.id] = (parent or tree).add(label)
    return tree


def _answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "question": answer.question,
        "answer": answer.answer,
        "short_answer": answer.short_answer,
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        "nodes": [n.model_dump(mode="json") for n in answer.nodes],
        "edges": answer.edges,
        "evidence": [e.model_dump(mode="json") for e in answer.evidence],
        "unsupported": answer.unsupported,
        "extractive": answer.extractive,
        "partial": answer.partial,
        "notes": answer.notes,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "timings": answer.timings,
    }


def _print_answer(answer: Answer) -> None:
    out.print()
    out.print(Text(answer.answer))
    if answer.citations:
        out.print()
        for c in answer.citations:
            snippet = " ".join(c.snippet.split())[:160]
            out.print(
                Text(f"[{c.n}] ", style="bold")
                + Text(f"{c.document} [{c.start_char}:{c.end_char}] ", style="cyan")
                + Text(snippet, style="dim")
            )
    for sentence in answer.unsupported:
        err.print(Text("unsupported: ", style="yellow") + Text(sentence))
    for note in answer.notes:
        err.print(Text(f"note: {note}", style="dim"))


async def _ask_one(agent: Any, collection: str, question: str, show_plan: bool) -> Answer:
    from quarry.agents.events import AnswerToken, Event, PlanUpdated

    if not show_plan:
        return await agent.ask(collection, question)
    with Live(plan_tree(question, []), console=err, refresh_per_second=8, transient=False) as live:

        async def emit(event: Event) -> None:
            if isinstance(event, PlanUpdated):
                live.update(plan_tree(question, event.nodes))
            elif isinstance(event, AnswerToken):
                pass  # the answer is printed whole below

        return await agent.ask(collection, question, emit)


@app.command()
def ask(
    collection: CollectionOpt,
    question: Annotated[str | None, typer.Argument(help="The question (or use --questions).")] = None,
    questions: Annotated[
        Path | None,
        typer.Option("--questions", help="File with one question per line ('-' for stdin); JSON lines out."),
    ] = None,
    show_plan: Annotated[bool, typer.Option("--show-plan", help="Draw the plan as it grows.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from a collection, with citations."""
    if (question is None) == (questions is None):
        raise _fail("give either a question or --questions FILE", 2)
    library = _library()
    agent, model = _agent_or_fail(library)

    async def main() -> None:
        try:
            if questions is not None:
                text = sys.stdin.read() if str(questions) == "-" else questions.read_text()
                for line in text.splitlines():
                    if line.strip():
                        answer = await agent.ask(collection, line.strip())
                        sys.stdout.write(json.dumps(_answer_json(answer), ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                return
            assert question is not None
            answer = await _ask_one(agent, collection, question, show_plan and not as_json)
            if as_json:
                sys.stdout.write(json.dumps(_answer_json(answer), ensure_ascii=False) + "\n")
            else:
                _print_answer(answer)
        finally:
            if model is not None:
                await model.aclose()

    try:
        asyncio.run(main())
    except OSError as exc:
        raise _fail(f"cannot read {questions}: {exc.strerror}", 2) from None
    except QuarryError as exc:
        raise _fail(str(exc)) from None


def _agent_or_fail(library: Any) -> tuple[Any, Any]:
    try:
        return _agent(library)
    except QuarryError as exc:
        raise _fail(str(exc)) from None


@app.command()
def research(
    collection: CollectionOpt,
    topic: Annotated[str | None, typer.Option("--topic", help="A topic to research.")] = None,
    questions: Annotated[Path | None, typer.Option("--questions", help="File with one question per line.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the markdown report here.")] = None,
    json_output: Annotated[Path | None, typer.Option("--json-output", help="Write the JSON report here.")] = None,
    sections: Annotated[int, typer.Option("--sections", min=1, max=12, help="Sections for a topic.")] = 5,
) -> None:
    """Write a cited research report on a topic or a list of questions."""
    if (topic is None) == (questions is None):
        raise _fail("give either --topic or --questions FILE", 2)
    try:
        todo = [q for q in questions.read_text().splitlines() if q.strip()] if questions else None
    except OSError as exc:
        raise _fail(f"cannot read {questions}: {exc.strerror}", 2) from None
    if questions is not None and not todo:
        raise _fail(f"{questions} has no questions", 2)
    library = _library()
    agent, model = _agent_or_fail(library)
    from quarry.agents.research import ReportSection, Researcher

    progress = Progress(
        TextColumn("[bold]research[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} sections"),
        TimeElapsedColumn(),
        console=err,
    )

    async def main() -> Any:
        task = progress.add_task("research", total=None)

        def on_progress(done: int, total: int, _section: ReportSection | None) -> None:
            progress.update(task, completed=done, total=total)

        try:
            return await Researcher(agent, max_sections=sections).run(
                collection, questions=todo, topic=topic, on_progress=on_progress
            )
        finally:
            if model is not None:
                await model.aclose()

    try:
        with progress:
            report = asyncio.run(main())
    except QuarryError as exc:
        raise _fail(str(exc)) from None
    markdown = report.markdown()
    if output:
        output.write_text(markdown)
        err.print(f"wrote {output}")
    if json_output:
        json_output.write_text(report.model_dump_json(indent=2))
        err.print(f"wrote {json_output}")
    if not output:
        out.print(Text(markdown))
