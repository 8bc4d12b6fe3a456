"""Runs searcher nodes as Celery tasks on the `search` queue, so sibling nodes of one
question run on different workers."""

from __future__ import annotations

import asyncio

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError

from quarry.agents.errors import AgentError
from quarry.agents.searcher import NodeResult, NodeTask


class CeleryExecutor:
    def __init__(self, app: Celery, wait_s: float = 120.0) -> None:
        self.app = app
        self.wait_s = wait_s

    async def run(self, task: NodeTask) -> NodeResult:
        pending = self.app.send_task("quarry.search_node", args=[task.model_dump_json()], queue="search")
        try:
            payload = await asyncio.to_thread(pending.get, timeout=self.wait_s, propagate=True)
        except asyncio.CancelledError:
            pending.revoke()
            raise
        except CeleryTimeoutError as exc:
            pending.revoke()
            raise AgentError(f"node {task.node_id}: no worker answered within {self.wait_s:.0f}s") from exc
        except Exception as exc:  # the remote error arrives rebuilt; keep its message, type it
            raise AgentError(f"node {task.node_id} failed on a worker: {type(exc).__name__}: {exc}") from exc
        return NodeResult.model_validate_json(payload)
