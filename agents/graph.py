"""The agent graph: plan → execute → write, as a LangGraph `StateGraph`.

Inside `execute`, plan nodes run as soon as their parents are done (no per-round barrier):
LangGraph's own supersteps wait for every branch, so the sub-question DAG is scheduled
here with asyncio, and node work goes through a pluggable `NodeExecutor` (in-process by
default, Celery workers in the service). After each node finishes the planner may extend
the graph, within the bounds of `AgentSettings`. When the wall-clock budget runs out,
running nodes are cancelled and the answer is written from the evidence gathered so far.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from quarry.agents.events import (
    CitationsChecked,
    Done,
    Emit,
    ErrorEvent,
    Event,
    NodeAnswered,
    NodeEvidence,
    NodeStarted,
    PlanUpdated,
    discard,
)
from quarry.agents.plan import AddNode, PlanGraph
from quarry.agents.planner import HeuristicPlanner, ModelPlanner, Planner, PlannerReply
from quarry.agents.reader import ExtractiveReader
from quarry.agents.searcher import LocalExecutor, LongReader, NodeExecutor, NodeResult, NodeTask, Searcher
from quarry.agents.writer import EXTRACTIVE_NOTE, Writer
from quarry.core.chat import ChatModel, Usage
from quarry.core.errors import QuarryError
from quarry.core.settings import Settings
from quarry.core.types import Answer, Evidence, NodeState, PlanNode
from quarry.retrieval.fusion import reciprocal_rank_fusion
from quarry.retrieval.library import Library

log = logging.getLogger("quarry.agents")


class RunState(TypedDict, total=False):
    question: str
    collection: str
    answer: Answer


@dataclass
class RunContext:
    """The mutable state of one question's run (LangGraph's runtime context)."""

    question: str
    collection: str
    graph: PlanGraph
    emit: Emit
    deadline: float
    started: float = field(default_factory=time.perf_counter)
    results: dict[str, NodeResult] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    rounds: int = 0
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    node_started: dict[str, float] = field(default_factory=dict)

    @property
    def remaining(self) -> float:
        return self.deadline - time.perf_counter()


class AgentGraph:
    """Answers questions over a collection with cited answers."""

    def __init__(
        self,
        library: Library,
        settings: Settings | None = None,
        model: ChatModel | None = None,
        executor: NodeExecutor | None = None,
        planner: Planner | None = None,
        long_reader: LongReader | None = None,
    ) -> None:
        self.library = library
        self.settings = settings or library.settings
        self.model = model
        self.reader = ExtractiveReader.for_library(library)
        self.planner: Planner = planner or (
            ModelPlanner(model)
            if model
            else HeuristicPlanner(
                self.reader, library.graph, self.settings.agents.max_hops, self.settings.agents.hop_beam
            )
        )
        self.executor = executor or LocalExecutor(
            Searcher(library, self.settings.agents, self.reader, model, long_reader)
        )
        self.writer = Writer(self.reader, model, reorder=self.settings.agents.reorder)
        builder = StateGraph(RunState, context_schema=RunContext)
        builder.add_node("plan", self._plan)
        builder.add_node("execute", self._execute)
        builder.add_node("write", self._write)
        builder.add_edge(START, "plan")
        builder.add_edge("plan", "execute")
        builder.add_edge("execute", "write")
        builder.add_edge("write", END)
        self._graph = builder.compile()

    async def ask(self, collection: str, question: str, emit: Emit = discard) -> Answer:
        """Answer `question` from `collection`, emitting events as the run goes."""
        question = self.library.retriever.validate(question)
        self.library.collection(collection)  # a missing collection fails before any work
        run = RunContext(
            question=question,
            collection=collection,
            graph=PlanGraph(self.settings.agents),
            emit=emit,
            deadline=time.perf_counter() + self.settings.agents.wall_time_s,
        )
        state = await self._graph.ainvoke({"question": question, "collection": collection}, context=run)
        answer: Answer = state["answer"]
        await emit(Done(answer=answer))
        return answer

    async def stream(self, collection: str, question: str) -> AsyncIterator[Event]:
        """The run's events as an async iterator, ending with `done` (or `error`)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        async def emit(event: Event) -> None:
            await queue.put(event)

        async def drive() -> None:
            try:
                await self.ask(collection, question, emit)
            except QuarryError as exc:
                await queue.put(ErrorEvent(message=str(exc), error=type(exc).__name__))
            except Exception as exc:  # a bug: logged, and the stream still ends with `error`
                log.exception("the run on collection %r failed", collection)
                await queue.put(ErrorEvent(message=f"internal error: {type(exc).__name__}", error=type(exc).__name__))
            finally:
                await queue.put(None)

        task = asyncio.create_task(drive())
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # graph steps -------------------------------------------------------------------------
    async def _plan(self, state: RunState, runtime: Runtime[RunContext]) -> RunState:
        run = runtime.context
        started = time.perf_counter()
        reply = await self._planner_call(run, self.planner.initial(run.question))
        rejected = reply.rejected + run.graph.apply(reply.ops)
        if not run.graph.nodes:  # nothing usable came back: the question itself is the plan
            run.graph.apply([AddNode(id="n1", question=run.question)])
        run.timings["plan"] = time.perf_counter() - started
        await self._emit_plan(run, rejected)
        return {}

    async def _planner_call(self, run: RunContext, call: Coroutine[Any, Any, PlannerReply]) -> PlannerReply:
        try:
            reply = await asyncio.wait_for(call, timeout=max(0.01, run.remaining))
        except TimeoutError:
            run.partial = True
            run.notes.append("the planner ran out of time")
            return PlannerReply([], ["planner timed out"], Usage())
        run.usage += reply.usage
        return reply

    async def _emit_plan(self, run: RunContext, rejected: list[str] | None = None) -> None:
        await run.emit(PlanUpdated(nodes=run.graph.snapshot(), edges=run.graph.edges, rejected=rejected or []))

    async def _execute(self, state: RunState, runtime: Runtime[RunContext]) -> RunState:
        run = runtime.context
        limits = self.settings.agents
        running: dict[asyncio.Task[NodeResult], str] = {}
        started = time.perf_counter()
        while True:
            for node in run.graph.ready():
                if len(running) >= limits.max_concurrency:
                    break
                node.state = NodeState.RUNNING
                run.node_started[node.id] = time.perf_counter()
                parents = [run.graph.nodes[p].model_copy() for p in node.parents]
                task = NodeTask(
                    collection=run.collection,
                    tenant=self.library.tenant,
                    node_id=node.id,
                    question=node.question,
                    parents=parents,
                )
                running[asyncio.create_task(self._run_node(task))] = node.id
                await run.emit(NodeStarted(node_id=node.id, question=node.question))
                await self._emit_plan(run)
            if not running:
                break
            done, _ = await asyncio.wait(running, timeout=max(0.0, run.remaining), return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await self._cancel(run, running)
                break
            for finished in done:
                await self._record(run, running.pop(finished), finished)
            if run.remaining <= 0:
                await self._cancel(run, running)
                break
        waiting = [n for n in run.graph.nodes.values() if n.state is NodeState.WAITING]
        if waiting and run.partial:
            run.notes.append(f"{len(waiting)} planned sub-question(s) never ran")
        run.timings["execute"] = time.perf_counter() - started
        return {}

    async def _run_node(self, task: NodeTask) -> NodeResult:
        return await asyncio.wait_for(self.executor.run(task), timeout=self.settings.agents.node_timeout_s)

    async def _record(self, run: RunContext, node_id: str, finished: asyncio.Task[NodeResult]) -> None:
        node = run.graph.nodes[node_id]
        node.seconds = round(time.perf_counter() - run.node_started.get(node_id, time.perf_counter()), 4)
        try:
            result = finished.result()
        except TimeoutError:
            node.state = NodeState.FAILED
            node.error = f"timed out after {self.settings.agents.node_timeout_s:.0f}s"
            run.partial = True
        except QuarryError as exc:
            node.state = NodeState.FAILED
            node.error = str(exc)
        else:
            run.results[node_id] = result
            run.usage += result.usage
            node.queries = result.queries
            node.answer = result.answer
            node.evidence_ids = result.evidence_ids
            node.worker = result.worker
            node.state = NodeState.DONE if result.found else NodeState.NOT_FOUND
            await run.emit(NodeEvidence(node_id=node_id, queries=result.queries, evidence=result.evidence))
        if node.state is NodeState.FAILED:
            await run.emit(ErrorEvent(message=node.error or "failed", node_id=node_id))
        await run.emit(NodeAnswered(node=node.model_copy()))
        if run.rounds < self.settings.agents.max_rounds and not run.graph.finished and run.remaining > 0:
            run.rounds += 1
            evidence = run.results[node_id].evidence if node_id in run.results else []
            extend = self.planner.extend(run.question, run.graph, node, evidence, run.collection)
            reply = await self._planner_call(run, extend)
            rejected = reply.rejected + run.graph.apply(reply.ops)
            await self._emit_plan(run, rejected)
        else:
            await self._emit_plan(run)

    async def _cancel(self, run: RunContext, running: dict[asyncio.Task[NodeResult], str]) -> None:
        run.partial = True
        run.notes.append(f"the {self.settings.agents.wall_time_s:.0f}s budget ran out; the answer uses what was found")
        for task, node_id in running.items():
            task.cancel()
            node = run.graph.nodes[node_id]
            node.state = NodeState.FAILED
            node.error = "cancelled: the question's time budget ran out"
        await asyncio.gather(*running, return_exceptions=True)
        running.clear()
        await self._emit_plan(run)

    async def _write(self, state: RunState, runtime: Runtime[RunContext]) -> RunState:
        run = runtime.context
        started = time.perf_counter()
        nodes = run.graph.snapshot()
        # the writer works from what each node read, not from everything it gathered
        read = self.settings.agents.evidence_per_node
        evidence: dict[str, list[Evidence]] = {nid: r.evidence[:read] for nid, r in run.results.items()}
        draft = await self.writer.write(run.question, nodes, evidence, run.emit)
        run.usage += draft.usage
        checked = await asyncio.to_thread(self.writer.check, draft)
        await run.emit(CitationsChecked(citations=checked.citations, unsupported=checked.unsupported))
        run.timings["write"] = time.perf_counter() - started
        run.timings["total"] = time.perf_counter() - run.started
        notes = list(run.notes) + [f"removed citation {r}" for r in checked.removed]
        if self.model is None:
            notes.append(EXTRACTIVE_NOTE.strip("()"))
        gathered = self._rank_evidence(run, nodes)
        answer = Answer(
            question=run.question,
            collection=run.collection,
            answer=checked.text,
            short_answer=draft.short_answer,
            citations=checked.citations,
            nodes=nodes,
            edges=run.graph.edges,
            evidence=gathered,
            unsupported=checked.unsupported,
            extractive=self.model is None,
            partial=run.partial,
            notes=notes,
            prompt_tokens=run.usage.prompt_tokens,
            completion_tokens=run.usage.completion_tokens,
            cached_prompt_tokens=run.usage.cached_prompt_tokens,
            timings={k: round(v, 4) for k, v in run.timings.items()},
        )
        return {"answer": answer}

    def _rank_evidence(self, run: RunContext, nodes: list[PlanNode]) -> list[Evidence]:
        """Every node's passages in one ranking (reciprocal rank fusion of the nodes' lists,
        in plan order), cut to the evidence budget."""
        lists = [run.results[n.id].evidence for n in nodes if n.id in run.results]
        by_id: dict[int, Evidence] = {}
        for evidence in lists:
            for ev in evidence:
                by_id.setdefault(ev.chunk_id, ev)
        fused = reciprocal_rank_fusion([[ev.chunk_id for ev in evidence] for evidence in lists])
        return [by_id[cid] for cid, _ in fused[: self.settings.agents.evidence_budget]]
