"""The searcher's long-document reader over a real library (SQLite, FAISS, BM25, the
bundled embedding model) and the memory engine on a tiny random Llama."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from quarry.agents.long_reader import LongDocumentReader
from quarry.agents.searcher import NodeTask
from quarry.core.settings import MemorySettings
from quarry.core.types import Evidence
from quarry.memory.config import SqueezedConfig
from quarry.memory.engine import LongContextEngine
from quarry.memory.store import ContextStore
from quarry.retrieval import Library, text_document
from tests.memory.test_engine import document


def evidence_for(library: Library, question: str) -> list[Evidence]:
    hits = library.search("docs", question, k=4)
    return [Evidence.from_hit(h) for h in hits]


def test_a_node_about_one_long_document_is_read_whole(
    library: Library, chat_model: Any, tokenizer: Any, tmp_path: Path
) -> None:
    long_text = document(words=900, seed=11)
    library.ingest_documents(
        "docs", [text_document(long_text, name="long.txt"), text_document("A short note.", name="note.txt")]
    )
    engine = LongContextEngine(
        chat_model,
        tokenizer,
        store=ContextStore(tmp_path / "contexts"),
        squeezed=SqueezedConfig(cluster_share=0.05, coarse_share=0.01, prefill_chunk=256),
        model_id="tiny",
    )
    settings = MemorySettings(min_document_tokens=300, max_new_tokens=5, target_share=0.5)
    reader = LongDocumentReader(library.store, settings, engine=engine)
    evidence = evidence_for(library, "silver river harbor")
    long_id = next(d.id for d in library.documents("docs") if d.source == "long.txt")

    async def run() -> Any:
        target = await reader.target(evidence)
        assert target == long_id
        task = NodeTask(collection="docs", node_id="n1", question="Where is the silver harbor?")
        return await reader.read(task, [task.question], evidence, target)

    result = asyncio.run(run())
    assert result.node_id == "n1" and result.evidence == evidence
    assert result.usage.prompt_tokens > 900 and 1 <= result.usage.completion_tokens <= 5
    if result.found:
        assert result.evidence_ids and all(
            e.document_id == long_id for e in evidence if e.chunk_id in result.evidence_ids
        )
    assert list((tmp_path / "contexts").rglob("*.safetensors"))  # the document's context was stored

    short_only = [e for e in evidence_for(library, "short note") if e.document_id != long_id]
    assert asyncio.run(reader.target(short_only)) is None  # short documents are read as passages


def test_the_agent_graph_reads_a_long_document_whole(
    library: Library, chat_model: Any, tokenizer: Any, tmp_path: Path
) -> None:
    """Wired through AgentGraph → Searcher: a node whose evidence is one long document is
    answered by the memory engine (its usage shows the whole document was read)."""
    from quarry.agents.graph import AgentGraph

    library.ingest_documents("docs", [text_document(document(words=900, seed=5), name="long.txt")])
    engine = LongContextEngine(
        chat_model,
        tokenizer,
        store=ContextStore(tmp_path / "contexts"),
        squeezed=SqueezedConfig(cluster_share=0.05, coarse_share=0.01, prefill_chunk=256),
        model_id="tiny",
    )
    reader = LongDocumentReader(library.store, MemorySettings(min_document_tokens=300, max_new_tokens=4), engine=engine)
    answer = asyncio.run(AgentGraph(library, long_reader=reader).ask("docs", "Where is the silver harbor?"))
    assert answer.prompt_tokens > 900  # the engine read the whole document, not a few passages
    assert list((tmp_path / "contexts").rglob("*.safetensors"))


def test_served_models_read_long_documents_with_the_prefix_layout(library: Library) -> None:
    """With a served model, a node about one long document sends the whole document first
    and the question last; the answer comes from that call."""
    from quarry.agents.graph import AgentGraph
    from quarry.agents.long_reader import PrefixCacheReader
    from tests.agents.scripted import ScriptedModel

    text = document(words=900, seed=7)
    library.ingest_documents("docs", [text_document(text, name="long.txt")])
    plan = {"ops": [{"op": "add_node", "id": "n1", "question": "Where is the silver harbor?", "parents": []}]}
    model = ScriptedModel(plan, {}, writer="It is by the river [1].")
    reader = PrefixCacheReader(library.store, MemorySettings(min_document_tokens=300), model)
    answer = asyncio.run(AgentGraph(library, model=model, long_reader=reader).ask("docs", "Where is the harbor?"))
    whole = [user for role, user in model.calls if role == "research" and text[:200] in user]
    assert whole, "the long document was sent whole"
    assert answer.nodes[0].state.value == "done" and answer.nodes[0].answer
