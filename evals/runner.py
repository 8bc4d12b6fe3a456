"""Running an eval: load the QA set → ingest its corpus (or use a given collection) → every
system on every item, each result appended to the run directory → report.

`run_eval` is what the CLI, a worker job or the API calls: settings or a Library in, a
progress callback, an `EvalReport` out. The run directory is named by a hash of the
configuration and the settings that change results, so running the same eval again
continues where a crashed one stopped (or just re-reports a finished one)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quarry.agents.reader import ExtractiveReader
from quarry.core.chat import ChatModel
from quarry.core.errors import QuarryError
from quarry.core.settings import Settings
from quarry.evals.baselines import BaselinePassage
from quarry.evals.datasets import DatasetName, load_dataset
from quarry.evals.errors import EvalError
from quarry.evals.report import EvalReport, build_report, write_outputs
from quarry.evals.rundir import RunDir, read_setup
from quarry.evals.scoring import GoldResolver, record, score
from quarry.evals.systems import (
    AgentSystem,
    LlamaIndexRetrieve,
    SingleShot,
    System,
    SystemSpec,
    default_systems,
    library_retrieve,
    parse_system,
)
from quarry.evals.types import CorpusDoc, Dataset, QAItem
from quarry.retrieval.errors import CollectionNotFoundError, DocumentError
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import safe_source_name, text_document

_MODES = {"dense": "dense", "bm25": "sparse", "hybrid": "hybrid", "graph": "graph"}


class EvalConfig(BaseModel):
    """What to evaluate and how; everything that changes results is in here or in the
    settings fingerprint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetName
    path: Path = Field(description="The QA file or folder.")
    corpus: Path | None = Field(None, description="Corpus file or folder (jsonl, hotpotqa).")
    collection: str | None = Field(None, description="Ask over this existing collection instead of ingesting.")
    limit: int | None = Field(None, ge=1, description="Evaluate this many items (a seeded sample unless `first`).")
    first: bool = Field(False, description="Take the first `limit` items rather than a sample.")
    seed: int = Field(0, description="Seed of the sample.")
    systems: list[str] = Field(
        default_factory=default_systems, description="System names; a -no-rerank or -no-reorder suffix ablates."
    )
    ks: list[int] = Field(default_factory=lambda: [1, 2, 5, 10], description="Cut-offs of recall@k.")
    reader: Literal["extractive", "llm"] = Field(
        "extractive", description="extractive: no generative model; llm: the configured llm.backend."
    )
    rerank: bool = Field(True, description="False switches reranking off for every system.")
    reorder: bool = Field(True, description="False switches reordering for the reader off for every system.")
    fetch: int = Field(30, ge=1, le=1000, description="Chunk hits fetched per query before mapping to documents.")
    needle_lengths: list[int] | None = None
    needle_depths: list[int] | None = None

    @field_validator("path", "corpus")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return path.expanduser().resolve() if path is not None else None

    @field_validator("ks")
    @classmethod
    def _ks(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 or k > 1000 for k in ks):
            raise ValueError("k values must be between 1 and 1000")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        names = [s.name for s in self.specs()]
        if not names:
            raise ValueError("no systems to evaluate")
        if len(set(names)) != len(names):
            raise ValueError(f"systems repeat: {', '.join(names)}")
        if self.fetch < max(self.ks):
            raise ValueError(f"fetch ({self.fetch}) must be at least the largest k ({max(self.ks)})")
        return self

    def specs(self) -> list[SystemSpec]:
        try:
            return [parse_system(s, self.rerank, self.reorder) for s in self.systems]
        except EvalError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class EvalProgress:
    """Reported as a run goes: stage is load, ingest, index, answer or report."""

    stage: str
    done: int
    total: int
    detail: str = ""


ProgressFn = Callable[[EvalProgress], None]


def _no_progress(_: EvalProgress) -> None:
    pass


def settings_fingerprint(settings: Settings, reader: str) -> dict[str, Any]:
    """The settings that change an eval's results."""
    fingerprint: dict[str, Any] = {
        "embedding_model": settings.embedding.model,
        "chunk_size": settings.ingest.chunk_size,
        "chunk_overlap": settings.ingest.chunk_overlap,
        "search": settings.search.model_dump(mode="json"),
        "agents": settings.agents.model_dump(mode="json"),
        "llm": None,
    }
    if reader == "llm":
        dumped = settings.model_dump(mode="json")
        fingerprint["llm"] = {"backend": settings.llm.backend, "model": settings.llm.model}
        fingerprint["memory"] = dumped.get("memory")  # how in-process models read long documents
    return fingerprint


def run_setup(config: EvalConfig, settings: Settings) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json"), "settings": settings_fingerprint(settings, config.reader)}


def run_name(config: EvalConfig, settings: Settings) -> str:
    """`<dataset>-<hash of the setup>`: the same eval gets the same run directory."""
    digest = hashlib.sha256(json.dumps(run_setup(config, settings), sort_keys=True).encode()).hexdigest()
    return f"{config.dataset}-{digest[:10]}"


def default_out(settings: Settings) -> Path:
    return settings.storage.data_dir / "evals"


def _with_agents(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"agents": settings.agents.model_copy(update=changes)})


def ablation_notes(specs: list[SystemSpec], config: EvalConfig, settings: Settings) -> list[str]:
    """Where a switch asked for changes nothing, say so."""
    notes = []
    if any(not s.rerank for s in specs) and not settings.search.rerank_model:
        notes.append("no reranker is configured (search.rerank_model), so switching reranking off changes nothing")
    if config.reader != "llm" and any(not s.reorder and s.base == "agent" for s in specs):
        notes.append(
            "the agent reorders passages only for a chat model: with the extractive reader -no-reorder changes nothing"
        )
    if config.reader == "llm" and any(not s.reorder and s.base != "agent" for s in specs):
        notes.append("with a chat model the writer reorders its passages itself: -no-reorder changes nothing")
    return notes


def select_items(items: list[QAItem], config: EvalConfig) -> list[QAItem]:
    if config.limit is None or config.limit >= len(items):
        return items
    if config.first:
        return items[: config.limit]
    return random.Random(config.seed).sample(items, config.limit)


# where items are asked ------------------------------------------------------------------------
class Targets:
    """The collections items are asked over, and how their documents map back to gold ids."""

    def __init__(self, library: Library, dataset: Dataset, config: EvalConfig) -> None:
        self.library = library
        self.dataset = dataset
        self.config = config
        self.docs: dict[str, list[CorpusDoc]] = {}  # collection -> the corpus documents in it
        self.scoped: dict[str, str] = {}  # corpus id -> its own collection
        self.main: str | None = config.collection
        self.source_to_id: dict[str, str] = {}
        self.notes: list[str] = []
        if config.collection is None:
            for doc in dataset.corpus:
                try:
                    source = safe_source_name(doc.id)
                except DocumentError as exc:
                    raise EvalError(f"{dataset.source}: corpus id {doc.id!r} cannot be a source name: {exc}") from None
                if self.source_to_id.setdefault(source, doc.id) != doc.id:
                    raise EvalError(
                        f"{dataset.source}: corpus ids {doc.id!r} and {self.source_to_id[source]!r} "
                        f"map to one source name {source!r}"
                    )

    def plan(self, items: list[QAItem]) -> None:
        """Decide the collections: one for unscoped items, one per document a scoped item is about."""
        if self.config.collection is not None:
            if any(item.scope for item in items):
                self.notes.append(f"scopes ignored: every question is asked over {self.config.collection}")
            return
        if not self.dataset.corpus:
            raise EvalError(
                f"{self.dataset.source}: the QA set has no corpus; give one (--corpus) or an existing collection (-c)"
            )
        base = f"eval-{self.dataset.name}-{self._corpus_key()}"
        by_id = {d.id: d for d in self.dataset.corpus}
        if any(item.scope is None for item in items):
            self.main = base
            self.docs[base] = list(self.dataset.corpus)
        for item in items:
            if item.scope is not None and item.scope not in self.scoped:
                name = f"{base}-{hashlib.sha256(item.scope.encode()).hexdigest()[:8]}"
                self.scoped[item.scope] = name
                self.docs[name] = [by_id[item.scope]]

    def _corpus_key(self) -> str:
        h = hashlib.sha256()
        s = self.library.settings
        h.update(f"{s.embedding.model}|{s.ingest.chunk_size}|{s.ingest.chunk_overlap}".encode())
        for doc in self.dataset.corpus:
            h.update(json.dumps([doc.id, doc.title, doc.text]).encode())
        return h.hexdigest()[:10]

    def collection_for(self, item: QAItem) -> str:
        if self.config.collection is None and item.scope is not None:
            return self.scoped[item.scope]
        assert self.main is not None
        return self.main

    def ingest(self, on_progress: ProgressFn) -> None:
        """Ingest each planned collection (idempotent: unchanged documents are skipped)."""
        if self.config.collection is not None:
            try:
                self.library.collection(self.config.collection)
            except CollectionNotFoundError:
                raise EvalError(f"no collection named {self.config.collection!r}") from None
            return
        total = sum(len(docs) for docs in self.docs.values())
        done = 0
        for name, docs in self.docs.items():
            sources = [text_document(d.text, name=d.id, title=d.title) for d in docs]
            report = self.library.ingest_documents(
                name, sources, on_progress=_ingest_progress(on_progress, done, total, name)
            )
            if report.failed:
                first = "; ".join(f.error for f in report.failed[:3])
                raise EvalError(f"{len(report.failed)} corpus document(s) failed to ingest into {name}: {first}")
            done += len(docs)
            on_progress(EvalProgress("ingest", done, total, name))

    def doc_of(self, document: str) -> str:
        """A passage's document name → the id gold is matched against."""
        return self.source_to_id.get(document, document)

    def resolver(self) -> GoldResolver:
        if self.config.collection is None:
            return GoldResolver((d.id, d.title, [safe_source_name(d.id)]) for d in self.dataset.corpus)
        infos = self.library.documents(self.config.collection)
        return GoldResolver((i.source, i.title, _aliases(i.source)) for i in infos)

    def passages(self, collection: str) -> list[BaselinePassage]:
        """The documents of a collection, for the llama-index baseline."""
        if collection in self.docs:
            return [BaselinePassage(d.id, d.title, d.text) for d in self.docs[collection]]
        store = self.library.store
        return [
            BaselinePassage(i.source, i.title, store.document_text(i.id))
            for i in self.library.documents(collection)
            if i.status == "indexed"
        ]

    def cache_key(self, collection: str) -> str:
        """Names the llama-index cache of a collection: ours are named by their content; a
        user's collection by its version, which every change bumps."""
        if collection in self.docs:
            return collection
        row = self.library.collection(collection)
        return f"{collection}-v{self.library.store.collection_version(row.id)}"


def _ingest_progress(on_progress: ProgressFn, before: int, total: int, name: str) -> Callable[[Any], None]:
    return lambda p: on_progress(EvalProgress("ingest", before + p.items_done, total, name))


def _aliases(source: str) -> list[str]:
    names = [source, Path(source).stem, Path(source).name]
    if "#" in source:
        names.append(source.split("#", 1)[1])
    return names


# systems ----------------------------------------------------------------------------------------
def _without_reranker(library: Library) -> Library:
    s = library.settings
    settings = s.model_copy(update={"search": s.search.model_copy(update={"rerank_model": None})})
    return Library(settings, store=library.store, embedder=library.embedder)


def build_systems(
    specs: list[SystemSpec], library: Library, targets: Targets, config: EvalConfig, model: ChatModel | None
) -> list[System]:
    settings = library.settings
    reader = ExtractiveReader.for_library(library)
    llama: LlamaIndexRetrieve | None = None
    systems: list[System] = []
    for spec in specs:
        if spec.base in _MODES:
            retrieve = library_retrieve(library, _MODES[spec.base], spec.rerank, config.fetch)
            systems.append(SingleShot(spec.name, retrieve, reader, settings, spec.reorder, model))
        elif spec.base == "llamaindex":
            if llama is None:
                from quarry.retrieval.embedder import pick_device, resolve_model

                llama = LlamaIndexRetrieve(
                    targets.passages,
                    resolve_model(settings.embedding.model),
                    settings.embedding.batch_size,
                    config.fetch,
                    cache_dir=default_out(settings) / "llamaindex",
                    cache_key=targets.cache_key,
                    device=pick_device(settings.embedding.device),
                )
            systems.append(SingleShot(spec.name, llama, reader, settings, spec.reorder, model))
        else:
            agent_library = library if spec.rerank or not settings.search.rerank_model else _without_reranker(library)
            agent_settings = settings if spec.reorder else _with_agents(settings, reorder=False)
            systems.append(AgentSystem(spec.name, agent_library, agent_settings, model))
    return systems


# the run ----------------------------------------------------------------------------------------
def run_eval(
    config: EvalConfig | None = None,
    library: Library | None = None,
    settings: Settings | None = None,
    out: Path | None = None,
    run_dir: Path | None = None,
    fresh: bool = False,
    on_progress: ProgressFn | None = None,
    model: ChatModel | None = None,
) -> EvalReport:
    """Run (or continue) an eval and write its reports. Give `config`, or `run_dir` of an
    earlier run to continue it with its own configuration. A Library made here is closed
    here; a model is made from the llm settings when `config.reader` is llm."""
    own = library is None
    library = library or Library(settings)
    try:
        return asyncio.run(arun_eval(config, library, out, run_dir, fresh, on_progress, model))
    finally:
        if own:
            library.close()


def load_config(run_dir: Path) -> EvalConfig:
    """The configuration of an earlier run."""
    try:
        return EvalConfig.model_validate(read_setup(run_dir)["config"])
    except ValueError as exc:
        raise EvalError(f"{run_dir}: the stored configuration is invalid: {exc}") from None


async def arun_eval(
    config: EvalConfig | None,
    library: Library,
    out: Path | None = None,
    run_dir: Path | None = None,
    fresh: bool = False,
    on_progress: ProgressFn | None = None,
    model: ChatModel | None = None,
) -> EvalReport:
    """`run_eval` inside a running event loop (the API)."""
    progress = on_progress or _no_progress
    if config is None:
        if run_dir is None:
            raise EvalError("give a configuration or the run directory of an earlier run")
        config = load_config(run_dir)
    settings = library.settings
    own_model = False
    if config.reader == "llm" and model is None:
        from quarry.agents.llm.factory import make_chat_model

        model = make_chat_model(settings.llm)
        if model is None:
            raise EvalError("--reader llm needs a generative backend: set llm.backend (QUARRY_LLM__BACKEND)")
        own_model = True
    try:
        started = time.time()
        progress(EvalProgress("load", 0, 1, str(config.path)))
        dataset = await asyncio.to_thread(
            load_dataset, config.dataset, config.path, config.corpus, config.needle_lengths, config.needle_depths
        )
        items = select_items(dataset.items, config)
        path = (run_dir or (out or default_out(settings)) / run_name(config, settings)).resolve()
        with RunDir.open(path, run_setup(config, settings), fresh=fresh) as run:
            specs = config.specs()
            targets = Targets(library, dataset, config)
            targets.notes += ablation_notes(specs, config, settings)
            pending = [(i, s) for i in items for s in specs if not run.done(s.name, i.id)]
            targets.plan(items)
            if pending:  # blocking work runs in threads: the API's event loop stays free
                await asyncio.to_thread(targets.ingest, progress)
            resolver = targets.resolver()
            missing = resolver.unresolved(dict.fromkeys(g for i in items for g in i.gold))
            if missing:
                targets.notes.append(f"{len(missing)} gold entries name no document, e.g. {missing[0]!r}")
            if pending:
                await _answer_all(run, items, specs, library, targets, resolver, config, model, progress)
            progress(EvalProgress("report", 0, 1))
            report = build_report(
                run.records(), config.model_dump(mode="json"), dataset, items, path, started, targets.notes
            )
            await asyncio.to_thread(write_outputs, report, path, run.records())
            progress(EvalProgress("report", 1, 1))
            return report
    finally:
        if own_model and model is not None:
            await model.aclose()


async def _answer_all(
    run: RunDir,
    items: list[QAItem],
    specs: list[SystemSpec],
    library: Library,
    targets: Targets,
    resolver: GoldResolver,
    config: EvalConfig,
    model: ChatModel | None,
    progress: ProgressFn,
) -> None:
    todo = [s for s in specs if any(not run.done(s.name, i.id) for i in items)]
    systems = build_systems(todo, library, targets, config, model)
    llama = next(
        (s.retrieve for s in systems if isinstance(s, SingleShot) and isinstance(s.retrieve, LlamaIndexRetrieve)), None
    )
    if isinstance(llama, LlamaIndexRetrieve):
        collections = list(dict.fromkeys(targets.collection_for(i) for i in items))
        for n, collection in enumerate(collections):
            progress(EvalProgress("index", n, len(collections), f"llama-index {collection}"))
            await asyncio.to_thread(llama.prepare, collection)
        progress(EvalProgress("index", len(collections), len(collections), "llama-index"))
    for collection in dict.fromkeys(targets.collection_for(i) for i in items):  # load indexes and models
        await asyncio.to_thread(library.search, collection, "warm up", 1)
        if isinstance(llama, LlamaIndexRetrieve):
            await asyncio.to_thread(llama, "warm up", collection)
    total = len(items) * len(specs)
    done = sum(1 for i in items for s in specs if run.done(s.name, i.id))
    progress(EvalProgress("answer", done, total))
    for item in items:  # systems interleaved per item: changes in machine load hit all alike
        collection = targets.collection_for(item)
        for system in systems:
            if run.done(system.name, item.id):
                continue
            try:
                prediction = await system.answer(item, collection)
            except QuarryError as exc:
                run.append(record(system.name, item, None, {}, [], [], error=f"{type(exc).__name__}: {exc}"))
            else:
                scores, ranked, cited = score(item, prediction, targets.doc_of, resolver, config.ks)
                run.append(record(system.name, item, prediction, scores, ranked, cited))
            done += 1
            progress(EvalProgress("answer", done, total, system.name))
