"""The writer composes the final answer with `[n]` citations, and the citation check
verifies that every marker points at a passage the writer was given and flags sentences
that no cited passage supports."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from quarry.agents import prompts
from quarry.agents.events import AnswerToken, Emit
from quarry.agents.planner import Comparison, parse_comparison, question_parts
from quarry.agents.reader import ExtractiveReader, ScoredSentence, answer_span, cosine_support, focus
from quarry.agents.text import capitalised_spans, quantity_spans, years
from quarry.core.chat import ChatModel, Usage
from quarry.core.types import Citation, Evidence, NodeState, PlanNode
from quarry.retrieval.reorder import reorder_for_reader
from quarry.retrieval.sentences import near_duplicate, split_sentences, words

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
NOT_FOUND = "Not found in the collection."
_EARLIER = re.compile(r"\b(older|oldest|first|earlier|earliest|before|sooner)\b", re.I)
_MORE = re.compile(
    r"\b(more|most|larger|largest|bigger|biggest|taller|tallest|longer|longest|higher|highest|greater)\b", re.I
)
# a nationality word: "American", "Hungarian", "British", "Chinese", "French", "Israeli"
_DEMONYM = re.compile(r"[A-Z][a-z]+(?:an|ian|ese|ish|ch|i|ic)")
_US_STATE = re.compile(
    r"\b(?:Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|"
    r"Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|"
    r"Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|"
    r"Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|"
    r"Washington|West Virginia|Wisconsin|Wyoming)\b"
)
_LESS = re.compile(r"\b(fewer|less|least|smaller|smallest|shorter|shortest|lower|lowest)\b", re.I)
_CONTRASTS = (
    re.compile(
        r"^(?:what(?:'s| is| are| was| were)?\s+)?(?:the\s+)?(?:main\s+|key\s+)?differences?\s+between\s+"
        r"(?P<a>.+?)\s+and\s+(?P<b>.+)$",
        re.I,
    ),
    re.compile(r"^how\s+(?:does|do|is|are)\s+(?P<a>.+?)\s+(?:differ|different)\s+from\s+(?P<b>.+)$", re.I),
    re.compile(r"^compare\s+(?P<a>.+?)\s+(?:and|with|to)\s+(?P<b>.+)$", re.I),
    re.compile(r"^(?P<a>[^,]+?)\s+(?:vs\.?|versus)\s+(?P<b>.+)$", re.I),
)


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
        cites = _Citations(evidence)
        comparison = parse_comparison(question)
        lines: list[str] | None = None
        short: str | None = None
        pair = _difference(question)
        if comparison is not None and comparison.kind == "difference":
            pair = (comparison.a, comparison.b)
        if pair is not None:
            lines = self._contrast(pair, nodes, evidence, cites)
        elif comparison and len(nodes) >= 2:
            lines, short = self._compare(comparison, nodes[:2], evidence, cites)
        parts = question_parts(question) if lines is None else [question]
        roots = [n for n in nodes if not n.parents]
        if lines is None and len(parts) > 1 and len(roots) == len(parts):
            lines, short = self._parts(parts, roots, nodes, evidence, cites)
        if lines is None:
            lines, short = self._answer(question, nodes, evidence, cites)
        if not lines:
            return Draft(f"{NOT_FOUND}\n\n{EXTRACTIVE_NOTE}", [])
        text = "\n".join(lines) + f"\n\n{EXTRACTIVE_NOTE}"
        return Draft(text, cites.passages, short_answer=short, spans=cites.spans)

    def _parts(
        self,
        parts: list[str],
        roots: list[PlanNode],
        nodes: list[PlanNode],
        evidence: dict[str, list[Evidence]],
        cites: _Citations,
    ) -> tuple[list[str] | None, str | None]:
        """A question that asks two things: each part answered from its own branch, in order;
        a part with no answer says so."""
        spans: list[str] = []  # the parts' short answers, together on the first line
        shorts: list[str] = []
        body: list[str] = []
        answered = False
        for part, root in zip(parts, roots, strict=True):
            got, short = self._answer(part, _branch(root, nodes), evidence, cites)
            answered = answered or bool(got)
            if short and got:
                spans.append(got[0])
                shorts.append(short)
                got = got[1:]
            body.extend(got or [f"{NOT_FOUND.rstrip('.')}: {focus(part)}"])
        if not answered:
            return None, None
        return (["; ".join(spans)] if spans else []) + body, "; ".join(shorts) or None

    def _answer(
        self, question: str, nodes: list[PlanNode], evidence: dict[str, list[Evidence]], cites: _Citations
    ) -> tuple[list[str], str | None]:
        """The question read over its first node's passages: the short answer on its own
        line when one was located, then the best one to three sentences, each cited. When
        the question needed hops (no typed answer in the first passages), the sentence that
        led on comes first and the last hop's sentences answer."""
        root = next((n for n in nodes if not n.parents and evidence.get(n.id)), None)
        if root is None:
            return [], None
        reading = self.reader.read(question, evidence[root.id], 3)
        hops = [n for n in nodes if n.parents and n.state is NodeState.DONE and evidence.get(n.id)]
        if not reading.found and not hops:
            return [], None
        # a multi-hop question's first passages often hold no answer to it; its hops may
        picked = [(root, s) for s in reading.sentences] if reading.found else []
        span = reading.span if reading.found else None
        source = (root, reading.sentences[0]) if reading.found else None
        # the deepest hop whose passages hold a typed answer (hops of a beam end at different depths)
        deepest_first = sorted(hops, key=lambda n: -n.depth)
        for last in deepest_first:
            hop = self.reader.read(last.question, evidence[last.id], 2)
            # the hop's typed answer, not the entity the hop searched for
            asked = f"{focus(question)} {last.question}"
            found = [(s, answer_span(asked, s.text, avoid=evidence[last.id][s.evidence].title)) for s in hop.sentences]
            hop_span = next(((s, a) for s, a in found if a), None)
            if hop_span is not None or last is deepest_first[-1]:
                break
        if hops and hop.found and (hop_span is not None or span is None):
            # with no typed answer to carry it, a hop's sentence must hold something the question
            # still asked after its first passages: a word of the question that the hop searched
            # for and the first answer did not say (a hop on a side entity quotes nothing)
            kept = hop.sentences
            if hop_span is None and reading.found:
                terms = self.reader.analyzer
                open_words = set(terms(last.question)) & self.reader.content_terms(question)
                open_words -= set(terms(reading.sentences[0].text))
                kept = [s for s in hop.sentences if open_words & set(terms(s.text))]
            if kept:
                picked = picked[:1]
            for s in kept:
                if not any(near_duplicate(s.text, p.text) for _, p in picked):
                    picked.append((last, s))
            span = hop_span[1] if hop_span else None
            if hop_span:
                source = (last, hop_span[0])
        if not picked:
            return [], None
        lines = []
        if span and source:
            lines.append(f"{span} {cites.cite(source[0].id, source[1])}")
        lines.append(" ".join(_quoted(s.text, cites.cite(n.id, s)) for n, s in _reading_order(picked, evidence)))
        return lines, span

    def _compare(
        self, c: Comparison, pair: list[PlanNode], evidence: dict[str, list[Evidence]], cites: _Citations
    ) -> tuple[list[str] | None, str | None]:
        """Two entities, one node each: the verdict on its own line, then both facts cited."""
        entities = (_name(c.a), _name(c.b))
        # a passage that names the entity supports its fact even where the node's own
        # reading fell below the bar (an unusual name embeds far from its question)
        facts = [
            self._fact(c, node, entity, evidence.get(node.id) or [])
            for node, entity in zip(pair, entities, strict=True)
        ]
        if all(f is None for f in facts):
            return None, None
        verdict = _decide(c, facts, self.reader.analyzer)
        parts = []
        said: list[str] = []
        for node, entity, fact in zip(pair, entities, facts, strict=True):
            if fact is None:
                continue
            marker = cites.cite(node.id, fact)
            if any(near_duplicate(fact.text, t) for t in said):
                continue  # one sentence holds both facts: quoted once
            said.append(fact.text)
            label = "" if (words(entity) - _FILLER) <= words(fact.text) else f"{_label(entity)}: "
            parts.append(label + _quoted(fact.text, marker, end=""))
        missing = [_label(e) for e, f in zip(entities, facts, strict=True) if f is None]
        lines = []
        if verdict is not None:
            if verdict in ("yes", "no"):
                markers = " ".join(cites.cite(n.id, f) for n, f in zip(pair, facts, strict=True) if f is not None)
                lines.append(f"{verdict.capitalize()} {markers}")
            else:
                side = 0 if verdict == c.a else 1
                fact = facts[side]
                marker = cites.cite(pair[side].id, fact) if fact is not None else ""
                lines.append(f"{_label(verdict)} {marker}".strip())
        lines.append("; ".join(parts) + ".")
        if missing:
            lines.append(f"(Nothing in the collection about {' or '.join(missing)}.)")
        return lines, (_label(verdict) if verdict not in (None, "yes", "no") else verdict)

    def _fact(self, c: Comparison, node: PlanNode, entity: str, passages: list[Evidence]) -> ScoredSentence | None:
        """The sentence about `entity` that carries what is compared (a year for older or
        first, a quantity for larger or more), else its best sentence."""
        if not passages:
            return None
        ranked = self.reader.rank(node.question, passages)
        named = words(entity) - _FILLER
        about = [s for s in ranked if named <= words(f"{passages[s.evidence].title} {passages[s.evidence].text}")]
        if not about and node.state is NodeState.DONE:
            about = self.reader.supported(ranked)
        if not about:
            return None
        if c.kind == "choice":
            value = _year if _TIME.search(c.stem) else _quantity
            return next((s for s in about[:6] if value(s.text) is not None), about[0])
        return about[0]

    def _contrast(
        self, pair: tuple[str, str], nodes: list[PlanNode], evidence: dict[str, list[Evidence]], cites: _Citations
    ) -> list[str] | None:
        """ "The difference between X and Y": each side's best sentence, cited."""
        lines: list[str] = []
        taken: list[ScoredSentence] = []
        for entity in pair:
            named = words(entity) - _FILLER
            options: list[tuple[PlanNode, ScoredSentence]] = []
            for node in nodes:
                passages = evidence.get(node.id) or []
                for s in self.reader.rank(f"What is {entity}?", passages)[:10] if passages else []:
                    if named <= words(f"{passages[s.evidence].title} {s.text}") and not any(
                        near_duplicate(s.text, t.text) for t in taken
                    ):
                        options.append((node, s))
            if options:
                node, pick = max(options, key=lambda o: o[1].score)
                taken.append(pick)
                label = "" if named <= words(pick.text) else f"{_label(entity)}: "
                lines.append(label + _quoted(pick.text, cites.cite(node.id, pick)))
        return lines or None

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
        # each line, each sentence, and each side of a "; " apart (a comparison's two facts)
        pieces = [
            part
            for line in text.splitlines()
            if line.strip() not in (EXTRACTIVE_NOTE, NOT_FOUND)
            for sentence in split_sentences(line)
            for part in re.split(r";\s+", sentence.text)
        ]
        for piece in pieces:
            body = _MARKER.sub("", piece).strip()
            if not body or body == NOT_FOUND or body.startswith("(") or len(body.split()) < 3:
                continue
            cited = [by_n[int(n)].snippet for n in _MARKER.findall(piece) if int(n) in by_n]
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


def _decide(c: Comparison, facts: list[ScoredSentence | None], terms: Callable[[str], list[str]]) -> str | None:
    """The extractive verdict of a two-entity comparison (an entity, or yes/no), when the
    facts allow one; `terms` analyses text into stemmed terms ("lakes" holds "lake")."""
    fa, fb = facts
    if c.kind == "both":
        wanted = set(terms(" ".join(words(c.rest) - _FILLER)))
        if fa is None or fb is None:
            return None
        if not wanted:
            return "yes"

        def has(fact: ScoredSentence) -> bool:  # all of what is asked ("American directors": both words)
            return wanted <= set(terms(fact.text))

        return "yes" if has(fa) and has(fb) else "no"
    if c.kind == "same":
        if fa is None or fb is None:
            return None
        va, vb = _property(fa.text, c.rest), _property(fb.text, c.rest)
        if va is None or vb is None:
            return None
        return "yes" if va == vb else "no"
    stem = c.stem.lower()
    if _TIME.search(stem):
        ya = _year(fa.text) if fa else None
        yb = _year(fb.text) if fb else None
        if ya is None or yb is None or ya == yb:
            return None
        earlier = c.a if ya < yb else c.b
        later = c.b if earlier == c.a else c.a
        return earlier if _EARLIER.search(stem) else later
    na = _quantity(fa.text) if fa else None
    nb = _quantity(fb.text) if fb else None
    if na is None or nb is None or na == nb:
        return None
    if _MORE.search(stem):
        return c.a if na > nb else c.b
    if _LESS.search(stem):
        return c.a if na < nb else c.b
    return None


def _property(sentence: str, prop: str) -> str | None:
    """The value a sentence gives a property ("Jiangsu" for province in "... a city in
    Jiangsu province", "American" for nationality), when it states one plainly."""
    prop = prop.lower().strip()
    if prop == "state":
        found = list(_US_STATE.finditer(sentence))
        if found:
            return found[-1].group(0)  # "Jefferson County, New York, United States": New York
    if prop in ("nationality", "country", "citizenship", "origin"):
        for span in capitalised_spans(sentence):
            for token in span.split():
                if _DEMONYM.fullmatch(token):
                    return token
        return None
    name = r"([A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*)"
    match = re.search(rf"{name}\s+{re.escape(prop)}\b", sentence) or re.search(
        rf"\b{re.escape(prop)}\s+of\s+{name}", sentence
    )
    return match.group(1) if match else None


def _name(entity: str) -> str:
    """An entity without the lower-case words a question left after its name ("Jingdezhen
    situated" -> "Jingdezhen")."""
    tokens = entity.split()
    if any(t[:1].isupper() for t in tokens):
        while tokens and tokens[-1].islower():
            tokens.pop()
    return " ".join(tokens) or entity


def _year(text: str) -> int | None:
    found = years(text)
    return min(found) if found else None


def _quantity(text: str) -> float | None:
    counts = [value for _, value, is_year in quantity_spans(text) if not is_year]
    return counts[0] if counts else None


def _reading_order(
    picked: list[tuple[PlanNode, ScoredSentence]], evidence: dict[str, list[Evidence]]
) -> list[tuple[PlanNode, ScoredSentence]]:
    """Sentences of one document in the order the document has them ("The tower is ... It
    was completed in 1889."), documents in the order of their best sentence."""
    groups: dict[int, list[tuple[PlanNode, ScoredSentence]]] = {}
    for node, sentence in picked:
        groups.setdefault(evidence[node.id][sentence.evidence].document_id, []).append((node, sentence))
    return [item for group in groups.values() for item in sorted(group, key=lambda x: x[1].start)]


def _label(entity: str) -> str:
    """An entity as the answer names it: "the Eiffel Tower" -> "Eiffel Tower"."""
    entity = _name(re.sub(r"^(?:the|a|an)\s+", "", entity.strip(), flags=re.I))
    return entity[:1].upper() + entity[1:]


def _difference(question: str) -> tuple[str, str] | None:
    """The two sides of "What is the difference between X and Y?" (or "How does X differ
    from Y?", "X vs Y", "Compare X and Y")."""
    q = question.strip().rstrip("?. ")
    for pattern in _CONTRASTS:
        m = pattern.match(q)
        if m:
            return _strip_entity(m.group("a")), _strip_entity(m.group("b"))
    return None


def _strip_entity(text: str) -> str:
    return text.strip(" ,.\"'")


def _quoted(sentence: str, marker: str, end: str = ".") -> str:
    """A quoted sentence with its citation before the final full stop ("... 1889 [1].");
    `end` closes it when it has no closing punctuation of its own."""
    text = " ".join(sentence.split())
    if text.endswith("."):
        return f"{text[:-1]} {marker}{end}"
    if text.endswith(("!", "?", ":", ";", '"', "'", ")", "”")):
        return f"{text} {marker}"
    return f"{text} {marker}{end}"


class _Citations:
    """Numbers passages in order of first citation and remembers what each is cited for."""

    def __init__(self, evidence: dict[str, list[Evidence]]) -> None:
        self.evidence = evidence
        self.passages: list[Evidence] = []
        self.spans: dict[int, tuple[int, int]] = {}

    def cite(self, node_id: str, sentence: ScoredSentence) -> str:
        ev = self.evidence[node_id][sentence.evidence]
        for n, p in enumerate(self.passages, start=1):
            if p.chunk_id == ev.chunk_id:
                a, b = self.spans[n]  # one passage cited for two sentences: the span covers both
                self.spans[n] = (min(a, sentence.start), max(b, sentence.end))
                return f"[{n}]"
        self.passages.append(ev)
        self.spans[len(self.passages)] = (sentence.start, sentence.end)
        return f"[{len(self.passages)}]"


def _branch(root: PlanNode, nodes: list[PlanNode]) -> list[PlanNode]:
    """`root` and the nodes that descend from it."""
    ids = {root.id}
    out = [root]
    for node in nodes:  # plan order: parents come before their children
        if node.id not in ids and any(p in ids for p in node.parents):
            ids.add(node.id)
            out.append(node)
    return out
