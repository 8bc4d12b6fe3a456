"""Entities a passage mentions, found without a model.

The passage graph (`retrieval.graph`) links chunks through the entities they mention and
documents through the entity they are about (their title). What counts as an entity here
is what survives in plain text: document titles and headings, capitalised names of one to
six words ("University of California", "Paris"), quoted terms, and code identifiers in
technical writing (`snake_case`, `CamelCase`, `dotted.names`, anything in backticks).
Keys are normalised (lower case, no leading article, single spaces) so that mentions
and titles meet."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

MAX_KEY_CHARS = 256

_CONNECTORS = {"of", "the", "de", "la", "le", "van", "von", "der", "du", "del", "da", "&"}
_STOP = {
    "a", "an", "the", "this", "that", "these", "those", "it", "its", "he", "she", "they", "we", "you", "i", "his",
    "her", "their", "our", "your", "in", "on", "at", "by", "for", "from", "to", "of", "and", "or", "but", "if",
    "when", "where", "while", "after", "before", "as", "with", "what", "which", "who", "whom", "whose", "why",
    "how", "is", "was", "are", "were", "be", "there", "here", "also", "however", "then", "note", "see", "not",
    "no", "yes", "all", "some", "many", "most", "one", "two", "during", "since", "until", "although", "because",
    "both", "each", "other", "such", "only", "about", "into", "over", "under", "between", "through", "can",
    "may", "will", "would", "should", "could", "do", "does", "did", "has", "have", "had", "new", "first", "last",
    "january", "february", "march", "april", "june", "july", "august", "september", "october", "november",
    "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    # literals of code: a name in a capitalised form, naming nothing one could hop to
    "true", "false", "none", "null",
    # words that often start a sentence without naming anything
    "born", "located", "based", "according", "following", "despite", "today", "later", "early", "several",
    "another", "every", "once", "originally", "currently", "together", "along", "among", "around", "within",
    "without", "upon", "unlike", "like", "use", "using", "example", "returns", "return", "create", "run", "add",
    "set", "get", "make", "read", "write", "install", "call", "pass", "define", "import", "open", "check",
    "instead", "now", "next", "finally", "second", "third", "thus", "therefore", "otherwise", "meanwhile",
    "out", "up", "down", "so", "yet", "still", "even", "just", "again", "let",
}  # fmt: skip

_WORD = r"[A-Z][\w'’.-]*[\w]|[A-Z]"
_NAME = re.compile(rf"(?:{_WORD})(?:\s+(?:(?:{'|'.join(sorted(_CONNECTORS - {'&'}))}|&)\s+)*(?:{_WORD}))*")
_QUOTED = re.compile(r"[\"“](?P<q>[^\"”\n]{2,80})[\"”]")
_BACKTICK = re.compile(r"`(?P<c>[^`\n]{2,80})`")
_IDENT = re.compile(
    r"\b(?:[A-Za-z_][A-Za-z0-9_]*\.)+[A-Za-z_][A-Za-z0-9_]*\b"  # dotted.names
    r"|\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"  # snake_case
    r"|\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b"  # CamelCase
)
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*[-*#>\d.)]*\s*)$")
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.I)
_SPACE = re.compile(r"\s+")
_DISAMBIGUATION = re.compile(r"\s+\([^()]*\)\s*$")  # "Green (album)" is about "Green"
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


@dataclass(frozen=True)
class Mention:
    key: str  # normalised: what mentions and titles are matched on
    name: str  # as written
    kind: str  # title, heading, name, quoted or code


def normalise(text: str) -> str:
    """The matching key of an entity name ("The Beatles" and "the beatles" meet; a title's
    disambiguation in brackets is dropped, so "Green (album)" meets "Green")."""
    key = _SPACE.sub(" ", _DISAMBIGUATION.sub("", text.replace("’", "'"))).strip().lower()
    key = _EDGE.sub("", _ARTICLE.sub("", key))
    key = re.sub(r"'s$", "", key)
    return key[:MAX_KEY_CHARS]


def _usable(key: str) -> bool:
    if len(key) < 2 or key.isdigit():
        return False
    words = key.split()
    return not all(w in _STOP for w in words)


_LEAD = {
    "a", "an", "the", "this", "that", "these", "those", "in", "on", "at", "by", "for", "from", "to", "and", "or",
    "but", "if", "when", "while", "after", "before", "as", "with", "however", "then", "also", "although",
    "because", "since", "during", "is", "was", "are", "were", "his", "her", "its", "their", "our", "my",
}  # fmt: skip


def _trim(words: list[str]) -> list[str]:
    while words and (words[0].lower() in _CONNECTORS or words[0].lower() in _LEAD):
        words = words[1:]
    while words and words[-1].lower() in _CONNECTORS:
        words = words[:-1]
    return words


def names(text: str) -> list[str]:
    """Capitalised names in running text. A single capitalised word counts unless it is a
    common word (at the start of a sentence, "Born" or "Use" name nothing)."""
    found: list[str] = []
    for m in _NAME.finditer(text):
        words = _trim(m.group(0).split())
        if not words:
            continue
        sentence_initial = bool(_SENTENCE_START.search(text[: m.start()]))
        if len(words) == 1 and words[0].lower() in _STOP:
            continue
        if sentence_initial and words[0].lower() in _LEAD:
            words = _trim(words[1:])
            if not words:
                continue
        found.append(" ".join(words).rstrip(".'’"))
    return found


def extract(text: str, title: str = "", heading: str = "", max_mentions: int = 64) -> list[tuple[Mention, int]]:
    """The entities a chunk mentions, with how often, most frequent first (at most
    `max_mentions`). The document's title and the chunk's headings always come first."""
    counts: Counter[str] = Counter()
    first: dict[str, Mention] = {}

    def add(name: str, kind: str, weight: int = 1) -> None:
        key = normalise(name)
        if not _usable(key):
            return
        counts[key] += weight
        first.setdefault(key, Mention(key, name.strip()[:MAX_KEY_CHARS], kind))

    if title:
        add(title, "title", 2)
    for part in heading.split(" > ") if heading else []:
        add(part, "heading", 2)
    for m in _BACKTICK.finditer(text):
        add(m.group("c"), "code")
    for m in _QUOTED.finditer(text):
        if len(m.group("q").split()) <= 6:
            add(m.group("q"), "quoted")
    for m in _IDENT.finditer(text):
        add(m.group(0), "code")
    for name in names(text):
        if len(name.split()) <= 6:
            add(name, "name")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_mentions]
    return [(first[key], n) for key, n in ranked]


def query_keys(text: str, known: dict[str, int] | None = None, max_words: int = 6) -> list[str]:
    """Entity keys a question names: its extracted entities, plus any word n-gram that is a
    known entity key of the collection (questions are often written in lower case)."""
    keys = [m.key for m, _ in extract(text)]
    if known:
        words = [normalise(w) for w in re.findall(r"[\w'’.-]+", text)]
        words = [w for w in words if w]
        for n in range(min(max_words, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                key = " ".join(words[i : i + n])
                if key in known and _usable(key) and (n > 1 or key not in _STOP):
                    keys.append(key)
    return list(dict.fromkeys(keys))
