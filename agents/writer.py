"""The writer composes the final answer with `[n]` citations, and the citation check
verifies that every marker points at a passage the writer was given and flags sentences
that no cited passage supports."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from quarry.agents import prompts
from quarry.agents.events import AnswerToken, Emit
from quarry.agents.planner import Comparison, parse_comparison
from quarry.agents.reader import ExtractiveReader, ScoredSentence, cosine_support
from quarry.agents.text import first_number, split_sentences, words, years
from quarry.core.chat import ChatModel, Usage
from quarry.core.types import Citation, Evidence, NodeState, PlanNode
from quarry.retrieval.reorder import reorder_for_reader

_MARKER = re.compile(r"\[(\d{1,3})\]")
_TIME = re.compile(
    r"\b(older|oldest|first|earlier|earliest|before|sooner|younger|newer|later|latest|last|recent)\b", re.I
)
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "and",
        "or",
        "both",
        "same",
        "from",
        "by",
        "with",
        "is",
        "are",
        "was",
        "were",
        "be",
    ]
)
EXTRACTIVE_NOTE = "(Extractive answer: sentences quoted from the sources; no generative model is configured.)"
NOT_FOUND = "The collection does not appear to contain the answer to this question."


@dataclass
class Draft:
    text: str
    passages: list[Evidence]
    short_answer: str | None = None
    usage: Usage = field(default_factory=Usage)
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # passage number -> cited sentence


@dataclass
class Checked:
    text: str
    citations: list[Citation]
    unsupported: list[str]
    removed: list[str]


class Writer:
    def __init__(
        self, reader: ExtractiveReader, model: ChatModel | None = None, max_passages: int = 12, reorder: bool = True
    ) -> None:
        self.reader = reader
        self.model = model
        self.max_passages = max_passages
        self.reorder = reorder  # passages for a chat model: best first, second best last

    # composing ------------------------------------------------------------------------
    async def write(
        self, question: str, nodes: list[PlanNode], evidence: dict[str, list[Evidence]], emit: Emit
    ) -> Draft:
        if self.model is None:
            # embedding work: off the event loop, so a service keeps answering other requests
            draft = await asyncio.to_thread(self._extractive, question, nodes, evidence)
            for piece in re.split(r"(?<=\s)", draft.text):
                await emit(AnswerToken(text=piece))
            return draft
        passages = self._passages(nodes, evidence)
        if not passages:
            await emit(AnswerToken(text=NOT_FOUND))
            return Draft(NOT_FOUND, [])
        ordered = reorder_for_reader(passages) if self.reorder else passages
        parts: list[str] = []
        usage = Usage()
        async for chunk in self.model.stream(prompts.writer_messages(question, nodes, ordered)):
            if chunk.delta:
                parts.append(chunk.delta)
                await emit(AnswerToken(text=chunk.delta))
            if chunk.usage is not None:
                usage = chunk.usage
        answered = [n.answer for n in nodes if n.state is NodeState.DONE and n.answer and not n.parents]
        leaf = [n.answer for n in nodes if n.state is NodeState.DONE and n.answer]
        short = leaf[-1] if leaf else (answered[0] if answered else None)
        return Draft("".join(parts).strip(), ordered, short_answer=short, usage=usage)

    def _passages(self, nodes: list[PlanNode], evidence: dict[str, list[Evidence]]) -> list[Evidence]:
        """The union of the nodes' evidence, best first, without repeats."""
        seen: dict[int, Evidence] = {}
        for node in nodes:
            for ev in sorted(evidence.get(node.id, []), key=lambda e: -e.score):
                seen.setdefault(ev.chunk_id, ev)
        return sorted(seen.values(), key=lambda e: -e.score)[: self.max_passages]

    def _extractive(self, question: str, nodes: list[PlanNode], evidence: dict[str, list[Evidence]]) -> Draft:
        passages: list[Evidence] = []
        spans: dict[int, tuple[int, int]] = {}

        def cite(node: PlanNode, sentence: ScoredSentence) -> str:
            ev = evidence[node.id][sentence.evidence]
            for i, p in enumerate(passages, start=1):
                if p.chunk_id == ev.chunk_id:
                    return f"[{i}]"
            passages.append(ev)
            spans[len(passages)] = (sentence.start, sentence.end)
            return f"[{len(passages)}]"

        best: dict[str, ScoredSentence] = {}
        ranked_by_node: dict[str, list[ScoredSentence]] = {}
        for node in nodes:
            if node.state is NodeState.DONE and evidence.get(node.id):
                ranked = self.reader.rank(node.question, evidence[node.id])
                if ranked:
                    best[node.id] = ranked[0]
                    ranked_by_node[node.id] = ranked
        if not best:
            return Draft(f"{NOT_FOUND} {EXTRACTIVE_NOTE}", [])
        comparison = parse_comparison(question)
        short: str | None
        if comparison and len(nodes) >= 2:
            if comparison.kind == "choice":
                # the sentence that carries what is compared (a year, a number) beats a closer paraphrase
                wants = (
                    years if _TIME.search(comparison.stem) else (lambda t: [first_number(t)] if first_number(t) else [])
                )
                entities = {nodes[0].id: comparison.a, nodes[1].id: comparison.b}
                for node_id, ranked in ranked_by_node.items():
                    entity = words(entities.get(node_id, "")) - _FILLER
                    about = [s for s in ranked if entity <= words(evidence[node_id][s.evidence].text)] or ranked
                    best[node_id] = next((s for s in about[:4] if wants(s.text)), about[0])
            short = _decide(comparison, nodes[:2], best)
        else:
            answered = [n for n in nodes if n.id in best]
            short = answered[-1].answer if answered else None
        lines: list[str] = []
        if short and short not in {best[n].text for n in best}:
            last = next(n for n in reversed(nodes) if n.id in best)
            lines.append(f"{short} {cite(last, best[last.id])}.")
        for node in nodes:
            if node.id in best:
                sentence = best[node.id]
                lines.append(f"{sentence.text.rstrip('.')} {cite(node, sentence)}.")
        lines.append(EXTRACTIVE_NOTE)
        return Draft(" ".join(lines), passages, short_answer=short, spans=spans)

    # checking -------------------------------------------------------------------------
    def check(self, draft: Draft) -> Checked:
        """Renumber citations in order of appearance, drop markers that point at no passage,
        and flag sentences that no cited passage supports."""
        removed: list[str] = []
        mapping: dict[int, int] = {}

        def renumber(match: re.Match[str]) -> str:
            n = int(match.group(1))
            if not 1 <= n <= len(draft.passages):
                removed.append(f"[{n}]: no such passage (the writer was given {len(draft.passages)})")
                return ""
            mapping.setdefault(n, len(mapping) + 1)
            return f"[{mapping[n]}]"

        text = _MARKER.sub(renumber, draft.text)
        text = re.sub(r"\s+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
        citations = []
        for old, new in sorted(mapping.items(), key=lambda kv: kv[1]):
            ev = draft.passages[old - 1]
            span = draft.spans.get(old)
            snippet = ev.text if span is None else ev.text[span[0] - ev.start_char : span[1] - ev.start_char]
            citations.append(
                Citation(
                    n=new,
                    chunk_id=ev.chunk_id,
                    document_id=ev.document_id,
                    document=ev.document,
                    title=ev.title,
                    start_char=ev.start_char,
                    end_char=ev.end_char,
                    snippet=snippet[:600],
                    span_start=span[0] if span else None,
                    span_end=span[1] if span else None,
                )
            )
        return Checked(text, citations, self._unsupported(text, citations), removed)

    def _unsupported(self, text: str, citations: list[Citation]) -> list[str]:
        by_n = {c.n: c for c in citations}
        claims: list[tuple[str, list[str]]] = []
        flagged: list[str] = []
        for sentence in split_sentences(text):
            body = _MARKER.sub("", sentence.text).strip()
            if not body or body == EXTRACTIVE_NOTE or body.startswith("(") or len(body.split()) < 3:
                continue
            cited = [by_n[int(n)].snippet for n in _MARKER.findall(sentence.text) if int(n) in by_n]
            if not cited:
                flagged.append(body)
            else:
                claims.append((body, cited))
        analyzer = self.reader.analyzer
        pending = []
        for body, cited in claims:
            terms = set(analyzer(body))
            overlap = max(len(terms & set(analyzer(c))) / len(terms) for c in cited) if terms else 1.0
            if overlap < 0.5:
                pending.append((body, cited))
        for body, cited in pending:
            if float(cosine_support(self.reader.embedder, [body], cited).max()) < 0.5:
                flagged.append(body)
        return flagged


def _decide(c: Comparison, nodes: list[PlanNode], best: dict[str, ScoredSentence]) -> str | None:
    """The extractive verdict of a two-entity comparison, when the evidence allows one."""
    a, b = nodes[0], nodes[1]
    if c.kind == "both":
        wanted = words(c.rest) - _FILLER
        if a.id not in best or b.id not in best or not wanted:
            return None if wanted else ("yes" if a.id in best and b.id in best else "no")

        def has(node: PlanNode) -> bool:
            return len(wanted & words(best[node.id].text)) * 2 >= len(wanted)

        return "yes" if has(a) and has(b) else "no"
    if c.kind == "same":
        if a.answer and b.answer:
            return "yes" if a.answer.strip().lower() == b.answer.strip().lower() else "no"
        return None
    stem = c.stem.lower()
    ya = years(best[a.id].text) if a.id in best else []
    yb = years(best[b.id].text) if b.id in best else []
    if re.search(r"\b(older|oldest|first|earlier|earliest|before|sooner)\b", stem) and ya and yb:
        return c.a if min(ya) <= min(yb) else c.b
    if re.search(r"\b(younger|newer|later|latest|last|more recent|most recent)\b", stem) and ya and yb:
        return c.a if max(ya) >= max(yb) else c.b
    na = first_number(best[a.id].text) if a.id in best else None
    nb = first_number(best[b.id].text) if b.id in best else None
    if na is not None and nb is not None:
        if re.search(r"\b(more|most|larger|largest|bigger|taller|longer|higher|greater)\b", stem):
            return c.a if na >= nb else c.b
        if re.search(r"\b(fewer|less|smaller|shorter|lower)\b", stem):
            return c.a if na <= nb else c.b
    return None
