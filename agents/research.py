"""Research reports: a topic or a list of questions in, a cited report out (markdown and
JSON). Each section is one run of the agent graph; citations are numbered across the
whole report."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from quarry.agents import prompts
from quarry.agents.errors import LLMError
from quarry.agents.graph import AgentGraph
from quarry.core.types import Answer, Citation

_MARKER = re.compile(r"\[(\d{1,3})\]")


class ReportSection(BaseModel):
    question: str
    answer: str
    short_answer: str | None = None
    citations: list[int] = Field(default_factory=list, description="Report-wide citation numbers used.")
    partial: bool = False
    notes: list[str] = Field(default_factory=list)


class Report(BaseModel):
    collection: str
    topic: str | None = None
    sections: list[ReportSection] = Field(default_factory=list)
    references: list[Citation] = Field(default_factory=list)
    partial: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def title(self) -> str:
        return f"Research report: {self.topic}" if self.topic else "Research report"

    def markdown(self) -> str:
        lines = [
            f"# {self.title}",
            "",
            f"_Collection `{self.collection}` · {len(self.sections)} section(s) · "
            f"{self.created_at:%Y-%m-%d %H:%M} UTC_",
            "",
        ]
        for i, section in enumerate(self.sections, start=1):
            lines += [f"## {i}. {section.question}", "", section.answer, ""]
            for note in section.notes:
                lines.append(f"> {note}")
            if section.notes:
                lines.append("")
        if self.references:
            lines += ["## References", ""]
            for ref in self.references:
                snippet = " ".join(ref.snippet.split())
                snippet = snippet[:200] + ("…" if len(snippet) > 200 else "")
                lines.append(
                    f"[{ref.n}] **{ref.title}** (`{ref.document}`, characters {ref.start_char}–{ref.end_char}): "
                    f"“{snippet}”"
                )
        return "\n".join(lines).rstrip() + "\n"


Progress = Callable[[int, int, ReportSection | None], Awaitable[None] | None]


class Researcher:
    def __init__(self, agent: AgentGraph, max_sections: int = 6) -> None:
        self.agent = agent
        self.max_sections = max_sections

    async def questions_for(self, collection: str, topic: str) -> list[str]:
        """Section questions for a topic: from the model, or (extractive mode) from the
        headings of the passages that best match the topic."""
        topic = self.agent.library.retriever.validate(topic)
        if self.agent.model is not None:
            try:
                completion = await self.agent.model.complete(
                    prompts.research_messages(topic, self.max_sections), json_schema=prompts.RESEARCH_SCHEMA
                )
                questions = [q.strip() for q in json.loads(completion.text)["questions"] if q.strip()]
                if questions:
                    return list(dict.fromkeys(questions))[: self.max_sections]
            except (LLMError, ValueError, KeyError, TypeError):
                pass  # fall back to the collection's own headings below
        hits = await asyncio.to_thread(self.agent.library.search, collection, topic, 20)
        questions = [f"What is {topic}?" if len(topic.split()) <= 6 else topic]
        for hit in hits:
            parts = [p.strip() for p in hit.heading.split(">") if p.strip()]
            aspect = parts[-1] if len(parts) > 1 else None
            if aspect and aspect.lower() not in topic.lower():
                question = f"{topic}: {aspect}"
                if question not in questions:
                    questions.append(question)
            if len(questions) >= self.max_sections:
                break
        return questions

    async def run(
        self,
        collection: str,
        *,
        questions: Sequence[str] | None = None,
        topic: str | None = None,
        on_progress: Progress | None = None,
        done: dict[str, Answer] | None = None,
        on_answer: Callable[[Answer], Awaitable[None] | None] | None = None,
    ) -> Report:
        """Answer each question (those in `done` are reused: a resumed job) and assemble
        the report; `on_answer` sees each new answer as soon as it exists."""
        if not questions and not topic:
            raise ValueError("give a topic or at least one question")
        todo = [q.strip() for q in questions or [] if q.strip()]
        if not todo:
            assert topic is not None
            todo = await self.questions_for(collection, topic)
        answers: list[Answer] = []
        await _call(on_progress, 0, len(todo), None)
        for i, question in enumerate(todo, start=1):
            answer = (done or {}).get(question)
            if answer is None:
                answer = await self.agent.ask(collection, question)
                if on_answer is not None:
                    result = on_answer(answer)
                    if result is not None:
                        await result
            answers.append(answer)
            report = assemble(collection, topic, answers)
            await _call(on_progress, i, len(todo), report.sections[-1])
        return assemble(collection, topic, answers)


def assemble(collection: str, topic: str | None, answers: Sequence[Answer]) -> Report:
    """A report from section answers, with citations numbered across the report."""
    report = Report(collection=collection, topic=topic)
    numbers: dict[int, int] = {}
    for answer in answers:
        section = _section(answer, numbers, report)
        report.sections.append(section)
        report.partial = report.partial or section.partial
    return report


def _section(answer: Answer, numbers: dict[int, int], report: Report) -> ReportSection:
    local = {c.n: c for c in answer.citations}
    used: list[int] = []

    def renumber(match: re.Match[str]) -> str:
        citation = local.get(int(match.group(1)))
        if citation is None:
            return ""
        if citation.chunk_id not in numbers:
            numbers[citation.chunk_id] = len(numbers) + 1
            report.references.append(citation.model_copy(update={"n": numbers[citation.chunk_id]}))
        n = numbers[citation.chunk_id]
        if n not in used:
            used.append(n)
        return f"[{n}]"

    text = _MARKER.sub(renumber, answer.answer)
    return ReportSection(
        question=answer.question,
        answer=text,
        short_answer=answer.short_answer,
        citations=used,
        partial=answer.partial,
        notes=[n for n in answer.notes if "Extractive answer" not in n],
    )


async def _call(progress: Progress | None, done: int, total: int, section: ReportSection | None) -> None:
    if progress is None:
        return
    result = progress(done, total, section)
    if result is not None:
        await result
