"""Research reports: a topic or a list of questions in, a cited report out (markdown and
JSON). Each section is one run of the agent graph; citations are numbered across the
whole report. A topic becomes an overview question and one question per aspect of it the
collection has (headings, else document titles), all different; a sentence quoted in one
section is not repeated in a later one, and the extractive disclaimer is said once."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from quarry.agents import prompts
from quarry.agents.errors import LLMError
from quarry.agents.graph import AgentGraph
from quarry.agents.writer import EXTRACTIVE_NOTE, NOT_FOUND
from quarry.core.types import Answer, Citation, Hit

_MARKER = re.compile(r"\[(\d{1,3})\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[*_`]*[A-Z0-9])")
_WORD = re.compile(r"[^\W_]+")
_MARKUP = re.compile(r"[`*_]+|\{[^}]*\}")
_STOP = frozenset(
    "a an and are as at be by for from how in into is it of on or the to was what when which who why with".split()
)
EXTRACTIVE_REPORT_NOTE = EXTRACTIVE_NOTE.strip("()").replace("answer:", "answers:")


class ReportSection(BaseModel):
    title: str = Field("", description="The section's heading: the question, or for a topic the aspect it covers.")
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
    notes: list[str] = Field(default_factory=list, description="Said once for the whole report.")
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
        for note in self.notes:
            lines += [f"> {note}", ""]
        for i, section in enumerate(self.sections, start=1):
            lines += [f"## {i}. {section.title or section.question}", "", section.answer, ""]
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
        """Up to `max_sections` different section questions for a topic: from the model, or
        (extractive mode, or when the model's answer is unusable) an overview question and
        one per aspect of the topic in the collection: the headings of the passages that
        match it best, then the titles of their documents."""
        topic = " ".join(self.agent.library.retriever.validate(topic).split())
        if self.agent.model is not None:
            try:
                completion = await self.agent.model.complete(
                    prompts.research_messages(topic, self.max_sections), json_schema=prompts.RESEARCH_SCHEMA
                )
                questions = _distinct(str(q) for q in json.loads(completion.text)["questions"])
                if questions:
                    return questions[: self.max_sections]
            except (LLMError, ValueError, KeyError, TypeError):
                pass  # fall back to the collection's own headings below
        hits = await asyncio.to_thread(self.agent.library.search, collection, topic, max(20, 5 * self.max_sections))
        aspects = _aspects(topic, hits)
        return _distinct([overview_question(topic), *(f"{topic}: {a}" for a in aspects)])[: self.max_sections]

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


def overview_question(topic: str) -> str:
    """The first section's question for a topic."""
    if len(topic.split()) > 6 or topic.endswith("?"):
        return topic
    last = topic.split()[-1].lower()
    plural = last.endswith("s") and not last.endswith(("ss", "us", "is"))
    return f"What {'are' if plural else 'is'} {topic}?"


def section_title(question: str, topic: str | None) -> str:
    """A section's heading: for a topic's own questions the aspect they cover ("Overview"
    for the first), else the question itself."""
    if topic:
        topic = " ".join(topic.split())
        if question == overview_question(topic):
            return "Overview"
        prefix = f"{topic}: "
        if question.startswith(prefix) and question[len(prefix) :].strip():
            aspect = question[len(prefix) :].strip()
            return aspect[:1].upper() + aspect[1:]
    return question


def _aspects(topic: str, hits: Sequence[Hit]) -> list[str]:
    """Aspects of the topic in these hits, best first: the innermost heading of each
    passage that mentions the topic, then the titles of the documents they come from; none
    the topic itself, none twice (compared by their words)."""
    wanted = _content_words(topic)
    relevant = [h for h in hits if wanted & _content_words(f"{h.heading} {h.text}")]
    headings, titles = [], []
    for hit in relevant:
        parts = [_clean(p) for p in hit.heading.split(">") if _clean(p)]
        if len(parts) > 1:
            headings.append(parts[-1])
        title = _clean(hit.title or "")
        if title:
            titles.append(title)
    seen = {frozenset(_content_words(topic))}
    out = []
    for aspect in [*headings, *titles]:
        key = frozenset(_content_words(aspect))
        if key and key not in seen and not key <= wanted:
            seen.add(key)
            out.append(aspect)
    return out


def _clean(text: str) -> str:
    """Heading text without markdown markup (code ticks, emphasis, attribute blocks)."""
    return " ".join(_MARKUP.sub(" ", text).split()).strip(" :")


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold()) if w not in _STOP and len(w) > 1}


def _distinct(questions: Iterable[str]) -> list[str]:
    """Questions stripped and without repeats (ignoring case, spaces and punctuation)."""
    out, seen = [], set()
    for q in questions:
        q = " ".join(q.split())
        key = " ".join(_WORD.findall(q.casefold()))
        if q and key not in seen:
            seen.add(key)
            out.append(q)
    return out


def assemble(collection: str, topic: str | None, answers: Sequence[Answer]) -> Report:
    """A report from section answers, with citations numbered across the report; a
    sentence quoted in an earlier section is left out of a later one, and the extractive
    disclaimer becomes one note of the report."""
    report = Report(collection=collection, topic=topic)
    numbers: dict[int, int] = {}
    said: set[str] = set()
    for answer in answers:
        section = _section(answer, numbers, report, said, topic)
        report.sections.append(section)
        report.partial = report.partial or section.partial
        if (answer.extractive or EXTRACTIVE_NOTE in answer.answer) and EXTRACTIVE_REPORT_NOTE not in report.notes:
            report.notes.append(EXTRACTIVE_REPORT_NOTE)
    return report


def _unsaid(text: str, said: set[str]) -> str:
    """`text` without the disclaimer and without sentences already in `said` (compared by
    their words, citation markers aside), which it extends."""
    lines = []
    for line in text.replace(EXTRACTIVE_NOTE, "").splitlines():
        kept = []
        for sentence in _SENTENCE_END.split(line.strip()):
            key = " ".join(_WORD.findall(_MARKER.sub("", sentence).casefold()))
            if key and key != " ".join(_WORD.findall(NOT_FOUND.casefold())) and key in said:
                continue
            said.add(key)
            kept.append(sentence)
        lines.append(" ".join(kept))
    out = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", out)


def _section(
    answer: Answer, numbers: dict[int, int], report: Report, said: set[str], topic: str | None
) -> ReportSection:
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

    text = _unsaid(answer.answer, said)
    title = section_title(answer.question, topic)
    if not text:
        text = f"{title}: nothing beyond the sections above."
    text = _MARKER.sub(renumber, text)
    return ReportSection(
        title=title,
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
