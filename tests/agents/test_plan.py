"""The plan graph: validated operations, bounds, readiness without barriers."""

from __future__ import annotations

import pytest

from quarry.agents.plan import AddEdge, AddNode, Finish, PlanGraph, parse_ops
from quarry.core.settings import AgentSettings
from quarry.core.types import NodeState


def _graph(**limits: int) -> PlanGraph:
    return PlanGraph(AgentSettings(**limits))


def test_nodes_edges_and_readiness() -> None:
    g = _graph()
    assert (
        g.apply(
            [
                AddNode(id="a", question="first?"),
                AddNode(id="b", question="second?"),
                AddNode(id="c", question="needs a?", parents=["a"]),
            ]
        )
        == []
    )
    assert [n.id for n in g.ready()] == ["a", "b"]
    g.nodes["a"].state = NodeState.DONE
    # c is ready although b has not finished: no per-round barrier
    assert [n.id for n in g.ready()] == ["b", "c"]
    assert g.edges == [("a", "c")]
    assert g.nodes["c"].depth == 1


def test_cycles_and_dangling_edges_are_refused() -> None:
    g = _graph()
    g.apply([AddNode(id="a", question="one?"), AddNode(id="b", question="two?", parents=["a"])])
    rejected = g.apply(
        [
            AddEdge(source="b", target="a"),
            AddEdge(source="a", target="zzz"),
            AddEdge(source="a", target="a"),
            AddNode(id="c", question="xyz?", parents=["ghost"]),
        ]
    )
    assert len(rejected) == 4
    assert "cycle" in rejected[0] and "dangling" in rejected[1] and "cycle" in rejected[2]
    assert "unknown parent" in rejected[3]
    assert g.edges == [("a", "b")]


def test_bounds() -> None:
    g = _graph(max_nodes=3, max_depth=2, max_fanout=1)
    rejected = g.apply(
        [
            AddNode(id="a", question="root?"),
            AddNode(id="b", question="child?", parents=["a"]),
            AddNode(id="c", question="second child?", parents=["a"]),  # fan-out
            AddNode(id="d", question="grandchild?", parents=["b"]),  # depth
            AddNode(id="e", question="another root?"),
            AddNode(id="f", question="one too many?"),  # node count
            AddNode(id="a", question="duplicate id?"),
        ]
    )
    assert [r.split(":")[0] for r in rejected] == ["add_node 'c'", "add_node 'd'", "add_node 'f'", "add_node 'a'"]
    assert "children" in rejected[0] and "depth" in rejected[1] and "maximum of 3 nodes" in rejected[2]
    assert "taken" in rejected[3]


def test_edges_into_started_nodes_and_after_finish() -> None:
    g = _graph()
    g.apply([AddNode(id="a", question="aaa?"), AddNode(id="b", question="bbb?")])
    g.nodes["b"].state = NodeState.RUNNING
    assert "already started" in g.apply([AddEdge(source="a", target="b")])[0]
    assert g.apply([Finish(), AddNode(id="c", question="late?")]) == ["add_node: the plan is already finished"]
    assert g.finished


def test_parse_ops_refuses_bad_items_one_by_one() -> None:
    ops, rejected = parse_ops(
        {
            "ops": [
                {"op": "add_node", "id": "n1", "question": "What is it?"},
                {"op": "exec", "code": "import os"},
                {"op": "add_node", "id": "n2"},
                {"op": "finish"},
            ]
        }
    )
    assert [o.op for o in ops] == ["add_node", "finish"]
    assert len(rejected) == 2
    assert parse_ops(["not", "a", "dict"])[1] == ["planner output has no 'ops' list"]


@pytest.mark.parametrize("bad_id", ["has space", "x" * 40, "semi;colon"])
def test_node_ids_are_checked(bad_id: str) -> None:
    g = _graph()
    ops, rejected = parse_ops({"ops": [{"op": "add_node", "id": bad_id, "question": "fine question?"}]})
    assert rejected or g.apply(ops)
