"""The graph of a state machine, read from its deployed ASL definition and laid out by grandalf (Sugiyama's
layered layout): one node per state (the states of a Map's item processor nested under the Map, inside a box),
an edge per Next, Default, Choice and Catch, and Start/End markers. Laid out once per definition."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field

from grandalf.graphs import Edge, Graph, Vertex
from grandalf.layouts import SugiyamaLayout
from grandalf.routing import EdgeViewer, route_with_lines

NODE_HEIGHT = 40.0
CHAR_WIDTH = 7.5  # px per character of a state name at the page's font size
MIN_NODE_WIDTH = 120.0
MARKER_SIZE = 28.0  # Start and End
MARGIN = 24.0
CLUSTER_PAD = 14.0
START, END = "__start__", "__end__"


@dataclass
class Node:
    id: str  # the state's path: "Map/Inner State" for a state of a Map's item processor
    name: str  # the state's name as ASL writes it
    type: str  # Task, Pass, Fail, Map, ... ; "Start"/"End" for the markers
    parent: str | None = None  # the Map whose item processor holds it
    x: float = 0.0  # centre
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0

    @property
    def is_state(self) -> bool:
        return self.type not in ("Start", "End")


@dataclass
class GraphEdge:
    source: str
    target: str
    kind: str  # next, choice, default, catch, items (into a Map's processor), results (out of it), end
    label: str = ""
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass
class Cluster:
    id: str  # the Map's node id
    x: float
    y: float
    width: float
    height: float


@dataclass
class LaidOutGraph:
    nodes: list[Node]
    edges: list[GraphEdge]
    clusters: list[Cluster]
    width: float
    height: float

    @property
    def states(self) -> list[Node]:
        return [n for n in self.nodes if n.is_state]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def state_nodes_and_edges(definition: dict) -> tuple[list[Node], list[GraphEdge]]:
    """Every state of `definition` (nested ones under their Map) and the transitions between them."""
    nodes = [Node(START, "Start", "Start"), Node(END, "End", "End")]
    edges = [GraphEdge(START, definition["StartAt"], "next")]
    _add_states(definition["States"], None, END, nodes, edges)
    return nodes, edges


def _add_states(states: dict, parent: str | None, end: str, nodes: list[Node], edges: list[GraphEdge]) -> None:
    def node_id(name: str) -> str:
        return f"{parent}/{name}" if parent else name

    for name, state in states.items():
        here = node_id(name)
        nodes.append(Node(here, name, state.get("Type", "?"), parent))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        after = state.get("Next")
        for choice in state.get("Choices", []):
            edges.append(GraphEdge(here, node_id(choice["Next"]), "choice"))
        if state.get("Default"):
            edges.append(GraphEdge(here, node_id(state["Default"]), "default"))
        for catch in state.get("Catch", []):
            edges.append(GraphEdge(here, node_id(catch["Next"]), "catch", ", ".join(catch.get("ErrorEquals", []))))
        if processor:
            edges.append(GraphEdge(here, f"{here}/{processor['StartAt']}", "items", "each item"))
            # The item processor's ends flow back into the Map's successor: the Map waits for them.
            _add_states(processor["States"], here, node_id(after) if after else end, nodes, edges)
        if after:
            edges.append(GraphEdge(here, node_id(after), "next"))
        if state.get("End") or state.get("Type") in ("Succeed", "Fail"):
            edges.append(GraphEdge(here, end, "results" if parent else "end"))


class _View:
    def __init__(self, w: float, h: float):
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


def node_size(node: Node) -> tuple[float, float]:
    if not node.is_state:
        return MARKER_SIZE * 2, MARKER_SIZE
    return max(MIN_NODE_WIDTH, CHAR_WIDTH * len(node.name) + 36), NODE_HEIGHT


def lay_out(definition: dict) -> LaidOutGraph:
    """Positions for every node and a polyline for every edge (grandalf's Sugiyama layout, top to bottom)."""
    nodes, edges = state_nodes_and_edges(definition)
    vertices = {}
    for node in nodes:
        vertex = Vertex(node.id)
        vertex.view = _View(*node_size(node))
        vertices[node.id] = vertex
    graph_edges = []
    for edge in edges:
        if edge.target not in vertices:  # a transition to a state that does not exist: drawn to nothing
            continue
        graph_edge = Edge(vertices[edge.source], vertices[edge.target])
        graph_edge.view = EdgeViewer()
        graph_edge.model = edge
        graph_edges.append(graph_edge)
    graph = Graph(list(vertices.values()), graph_edges)
    for component in graph.C:
        layout = SugiyamaLayout(component)
        layout.route_edge = route_with_lines
        roots = [v for v in component.sV if v.data == START] or None
        layout.init_all(roots=roots)
        layout.draw()
    # Components are laid out apart from each other; put them side by side.
    offset_x = 0.0
    for component in graph.C:
        xs = [v.view.xy[0] - v.view.w / 2 for v in component.sV] + [v.view.xy[0] + v.view.w / 2 for v in component.sV]
        left, right = min(xs), max(xs)
        for vertex in component.sV:
            vertex.view.xy = (vertex.view.xy[0] - left + offset_x, vertex.view.xy[1])
        for graph_edge in component.sE:
            graph_edge.view._pts = [(x - left + offset_x, y) for x, y in getattr(graph_edge.view, "_pts", [])]
        offset_x += right - left + MARGIN
    for node in nodes:
        view = vertices[node.id].view
        node.x, node.y = view.xy
        node.width, node.height = view.w, view.h
    for graph_edge in graph_edges:
        graph_edge.model.points = list(getattr(graph_edge.view, "_pts", []))
    laid_out = [e for e in edges if e.points]
    clusters = _clusters(nodes)
    return _translated(nodes, laid_out, clusters)


def _clusters(nodes: list[Node]) -> list[Cluster]:
    found = []
    for parent in {n.parent for n in nodes if n.parent}:
        inner = [n for n in nodes if n.parent == parent]
        left = min(n.x - n.width / 2 for n in inner) - CLUSTER_PAD
        top = min(n.y - n.height / 2 for n in inner) - CLUSTER_PAD
        right = max(n.x + n.width / 2 for n in inner) + CLUSTER_PAD
        bottom = max(n.y + n.height / 2 for n in inner) + CLUSTER_PAD
        found.append(Cluster(parent, left, top, right - left, bottom - top))
    return sorted(found, key=lambda c: c.id)


def _translated(nodes: list[Node], edges: list[GraphEdge], clusters: list[Cluster]) -> LaidOutGraph:
    points = [p for e in edges for p in e.points]  # an edge bent around a node may reach past every node
    xs = [n.x - n.width / 2 for n in nodes] + [c.x for c in clusters] + [x for x, _ in points]
    ys = [n.y - n.height / 2 for n in nodes] + [c.y for c in clusters] + [y for _, y in points]
    dx, dy = MARGIN - min(xs), MARGIN - min(ys)
    for node in nodes:
        node.x, node.y = node.x + dx, node.y + dy
    for edge in edges:
        edge.points = [(x + dx, y + dy) for x, y in edge.points]
    for cluster in clusters:
        cluster.x, cluster.y = cluster.x + dx, cluster.y + dy
    points = [p for e in edges for p in e.points]
    right = max([n.x + n.width / 2 for n in nodes] + [c.x + c.width for c in clusters] + [x for x, _ in points])
    bottom = max([n.y + n.height / 2 for n in nodes] + [c.y + c.height for c in clusters] + [y for _, y in points])
    return LaidOutGraph(nodes, edges, clusters, right + MARGIN, bottom + MARGIN)


@functools.lru_cache(maxsize=16)
def _lay_out_text(text: str) -> LaidOutGraph:
    return lay_out(json.loads(text))


def graph_of(definition_text: str) -> LaidOutGraph:
    """The laid-out graph of a definition, computed once per distinct definition (a deployed state machine
    has one, shared by all its executions)."""
    return _lay_out_text(definition_text)


def definition_digest(definition_text: str) -> str:
    return hashlib.sha256(definition_text.encode()).hexdigest()[:12]
