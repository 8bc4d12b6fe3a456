"""What the API process holds: one agent per tenant, reused across questions."""

from __future__ import annotations

import asyncio

from quarry.api.keys import KeyStore
from quarry.api.services import Services
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.workers.jobs import JobStore


def test_one_agent_per_tenant_serves_concurrent_questions(library: Library) -> None:
    library.ingest_documents(
        "kb",
        [
            text_document("Blue whales are the largest animals known. They feed on krill.", "whales.md"),
            text_document("Green tea is made from unoxidised leaves of Camellia sinensis.", "tea.md"),
        ],
    )
    engine = library.store.engine
    services = Services(library.settings, library, JobStore(engine), KeyStore(engine), celery=None)
    agent = services.agent("default")
    assert services.agent("default") is agent
    assert services.agent("other") is not agent

    async def both() -> list[set[str]]:
        answers = await asyncio.gather(
            agent.ask("kb", "Which animals are the largest known?"), agent.ask("kb", "What is green tea made from?")
        )
        return [{c.document for c in a.citations} for a in answers]

    whales, tea = asyncio.run(both())
    assert whales == {"whales.md"} and tea == {"tea.md"}  # runs on one agent keep their own state
