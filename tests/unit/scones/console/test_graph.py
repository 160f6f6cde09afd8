"""The graph of the deployed definitions: one node per state (a Map's item processor nested under it), every
transition an edge, and every node placed by the layout without overlapping another."""

from __future__ import annotations

import json

from cloud.artifacts import ROOT
from scones.console.graph import END, START, lay_out

MACHINES = ROOT / "statemachine"


def load(name: str) -> dict:
    return json.loads((MACHINES / name).read_text())


def test_one_node_per_state_and_an_edge_per_transition():
    graph = lay_out(load("image_classification.asl.json"))
    assert [n.id for n in graph.states] == [
        "Serialize Image Data",
        "Classify Image",
        "Filter Low Confidence",
        "Low Confidence",
    ]
    edges = {(e.source, e.target, e.kind) for e in graph.edges}
    assert (START, "Serialize Image Data", "next") in edges
    assert ("Filter Low Confidence", "Low Confidence", "catch") in edges
    assert ("Filter Low Confidence", END, "end") in edges and ("Low Confidence", END, "end") in edges


def test_the_batch_maps_states_are_nested_under_the_map():
    graph = lay_out(load("batch_classification.asl.json"))
    inner = [n for n in graph.states if n.parent == "Classify Each Image"]
    assert len(graph.states) == 4 + len(inner) and len(inner) == 7
    assert [c.id for c in graph.clusters] == ["Classify Each Image"]
    cluster = graph.clusters[0]
    for node in inner:
        assert cluster.x <= node.x - node.width / 2 and node.x + node.width / 2 <= cluster.x + cluster.width


def test_no_two_nodes_overlap_and_every_edge_is_drawn():
    for name in ("image_classification.asl.json", "batch_classification.asl.json"):
        graph = lay_out(load(name))
        boxes = [(n.x - n.width / 2, n.y - n.height / 2, n.x + n.width / 2, n.y + n.height / 2) for n in graph.nodes]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (name, a, b)
        assert all(len(e.points) >= 2 for e in graph.edges)
        assert all(0 <= x <= graph.width and 0 <= y <= graph.height for e in graph.edges for x, y in e.points)
