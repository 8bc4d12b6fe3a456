"""The plan: a DAG of sub-questions grown by graph operations.

A planner (model or heuristic) emits operations as JSON matching `PLAN_OPS_SCHEMA`; they
are validated here one by one and never executed as code. Cycles, dangling edges, unknown
parents and operations past the bounds are refused with a reason; the rest are applied.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from quarry.core.settings import MAX_QUERY_CHARS, AgentSettings
from quarry.core.types import NodeState, PlanNode

_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class AddNode(BaseModel):
    op: Literal["add_node"] = "add_node"
    id: str = Field(min_length=1, max_length=32)
    # a user's whole question may become a node (up to search.max_query_chars); the schema asks a
    # model for sub-questions of at most 500
    question: str = Field(min_length=3, max_length=MAX_QUERY_CHARS)
    parents: list[str] = Field(default_factory=list, max_length=8)


class AddEdge(BaseModel):
    op: Literal["add_edge"] = "add_edge"
    source: str
    target: str


class Finish(BaseModel):
    op: Literal["finish"] = "finish"


GraphOp = Annotated[AddNode | AddEdge | Finish, Field(discriminator="op")]
_OPS = TypeAdapter(list[GraphOp])

PLAN_OPS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ops": {
            "type": "array",
            "maxItems": 16,
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "op": {"const": "add_node"},
                            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
                            "question": {"type": "string", "minLength": 3, "maxLength": 500},
                            "parents": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
                        },
                        "required": ["op", "id", "question", "parents"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {
                            "op": {"const": "add_edge"},
                            "source": {"type": "string"},
                            "target": {"type": "string"},
                        },
                        "required": ["op", "source", "target"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"op": {"const": "finish"}},
                        "required": ["op"],
                        "additionalProperties": False,
                    },
                ]
            },
        }
    },
    "required": ["ops"],
    "additionalProperties": False,
}


def parse_ops(payload: Any) -> tuple[list[AddNode | AddEdge | Finish], list[str]]:
    """Operations from a planner's JSON (`{"ops": [...]}`); malformed items are refused
    one by one rather than sinking the whole batch."""
    items = payload.get("ops") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return [], ["planner output has no 'ops' list"]
    ops: list[AddNode | AddEdge | Finish] = []
    rejected: list[str] = []
    for i, item in enumerate(items):
        try:
            ops.extend(_OPS.validate_python([item]))
        except ValidationError as exc:
            rejected.append(f"op {i}: {exc.errors()[0]['msg']}")
    return ops, rejected


class PlanGraph:
    """Nodes, dependency edges and states of one question's plan."""

    def __init__(self, limits: AgentSettings) -> None:
        self.limits = limits
        self.nodes: dict[str, PlanNode] = {}
        self.finished = False

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, n.id) for n in self.nodes.values() for p in n.parents]

    def apply(self, ops: list[AddNode | AddEdge | Finish]) -> list[str]:
        """Apply valid operations in order; returns the reasons for the ones refused."""
        rejected: list[str] = []
        for op in ops:
            reason = self._apply_one(op)
            if reason:
                rejected.append(reason)
        return rejected

    def _apply_one(self, op: AddNode | AddEdge | Finish) -> str | None:
        if isinstance(op, Finish):
            self.finished = True
            return None
        if self.finished:
            return f"{op.op}: the plan is already finished"
        if isinstance(op, AddNode):
            return self._add_node(op)
        return self._add_edge(op.source, op.target)

    def _add_node(self, op: AddNode) -> str | None:
        if not _ID.match(op.id):
            return f"add_node {op.id!r}: ids are 1-32 letters, digits, '_' or '-'"
        if op.id in self.nodes:
            return f"add_node {op.id!r}: the id is taken"
        if len(self.nodes) >= self.limits.max_nodes:
            return f"add_node {op.id!r}: the plan already has the maximum of {self.limits.max_nodes} nodes"
        parents = list(dict.fromkeys(op.parents))
        missing = [p for p in parents if p not in self.nodes]
        if missing:
            return f"add_node {op.id!r}: unknown parent(s) {', '.join(missing)}"
        depth = 1 + max((self.nodes[p].depth for p in parents), default=-1)
        if depth >= self.limits.max_depth:
            return f"add_node {op.id!r}: depth {depth + 1} exceeds the maximum of {self.limits.max_depth}"
        for p in parents:
            children = sum(1 for n in self.nodes.values() if p in n.parents)
            if children >= self.limits.max_fanout:
                return f"add_node {op.id!r}: {p!r} already has the maximum of {self.limits.max_fanout} children"
            if self.nodes[p].state.finished and not self._may_extend_from(p):
                return f"add_node {op.id!r}: parent {p!r} failed"
        self.nodes[op.id] = PlanNode(id=op.id, question=op.question.strip(), parents=parents, depth=depth)
        return None

    def _may_extend_from(self, parent: str) -> bool:
        return self.nodes[parent].state is not NodeState.FAILED

    def _add_edge(self, source: str, target: str) -> str | None:
        if source not in self.nodes or target not in self.nodes:
            return f"add_edge {source}->{target}: dangling edge (unknown node)"
        node = self.nodes[target]
        if source in node.parents:
            return None
        if node.state is not NodeState.WAITING:
            return f"add_edge {source}->{target}: {target!r} has already started"
        if source == target or self._reaches(target, source):
            return f"add_edge {source}->{target}: it would make a cycle"
        node.parents.append(source)
        self._update_depths()
        if max(n.depth for n in self.nodes.values()) >= self.limits.max_depth:
            node.parents.remove(source)
            self._update_depths()
            return f"add_edge {source}->{target}: the plan would exceed depth {self.limits.max_depth}"
        return None

    def _reaches(self, start: str, goal: str) -> bool:
        """Whether `goal` is reachable from `start` following parent -> child edges."""
        stack, seen = [start], set()
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            if current in seen:
                continue
            seen.add(current)
            stack.extend(n.id for n in self.nodes.values() if current in n.parents)
        return False

    def _update_depths(self) -> None:
        for node in self._topological():
            node.depth = 1 + max((self.nodes[p].depth for p in node.parents), default=-1)

    def _topological(self) -> list[PlanNode]:
        order: list[PlanNode] = []
        placed: set[str] = set()
        pending = list(self.nodes.values())
        while pending:
            ready = [n for n in pending if all(p in placed for p in n.parents)]
            if not ready:  # unreachable: edges are checked for cycles before they are added
                raise RuntimeError("plan graph has a cycle")
            for n in ready:
                order.append(n)
                placed.add(n.id)
            pending = [n for n in pending if n.id not in placed]
        return order

    def ready(self) -> list[PlanNode]:
        """Waiting nodes whose parents have all finished (no per-round barrier)."""
        return [
            n
            for n in self.nodes.values()
            if n.state is NodeState.WAITING and all(self.nodes[p].state.finished for p in n.parents)
        ]

    def running(self) -> list[PlanNode]:
        return [n for n in self.nodes.values() if n.state is NodeState.RUNNING]

    def leaves(self) -> list[PlanNode]:
        parents = {p for n in self.nodes.values() for p in n.parents}
        return [n for n in self.nodes.values() if n.id not in parents]

    def snapshot(self) -> list[PlanNode]:
        return [n.model_copy(deep=True) for n in self._topological()]

    def new_id(self, prefix: str = "n", taken: Collection[str] = ()) -> str:
        """A node id not used by the plan, nor in `taken` (ids of operations not yet applied)."""
        i = len(self.nodes) + 1
        while f"{prefix}{i}" in self.nodes or f"{prefix}{i}" in taken:
            i += 1
        return f"{prefix}{i}"
