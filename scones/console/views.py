"""What each page shows, computed from the store: the executions list with its filters and counts, and one
execution with its graph, path, states, image, scores, batch and correlation id."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from lambdas.contract import CLASSES
from scones.console.graph import LaidOutGraph, graph_of
from scones.console.history import NOT_RUN, ExecutionPath, colour_items, read_history
from scones.console.store import BATCH_MACHINE, ConsoleStore, ExecutionRow, parse_input, row_of, scores_of

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
OUTCOMES = ("routed", "rejected", "failed", "running", "done")
SUMMARY_PREFIX = "batch-summaries/"  # where lambdas/summarize_batch.py writes (its summary_location says so too)


@dataclass
class Filters:
    status: str = ""
    outcome: str = ""  # an outcome, or "failed:<ErrorName>"
    q: str = ""  # a part of the S3 key

    @classmethod
    def from_query(cls, query) -> Filters:
        return cls(query.get("status", "")[:40], query.get("outcome", "")[:120], query.get("q", "")[:1024])

    def keep(self, row: ExecutionRow) -> bool | None:
        """Whether the row passes; None when it cannot be told yet: the row is still being read and the
        filters ask about what only its description tells (its key, or how it failed)."""
        if self.status and row.status != self.status:
            return False
        undecided = False
        if self.outcome:
            outcome, _, error = self.outcome.partition(":")
            if row.reading and not row.outcome:  # ended otherwise than SUCCEEDED: rejected or failed
                if outcome not in ("rejected", "failed"):
                    return False
                undecided = True
            elif row.reading and error and row.outcome == "failed":  # a batch: failed, with which error?
                undecided = True
            elif row.outcome != outcome or (error and row.error != error):
                return False
        if self.q and self.q.lower() not in row.key.lower():
            if not (row.reading and not row.key):
                return False
            undecided = True
        return None if undecided else True


@dataclass
class ExecutionsView:
    rows: list[ExecutionRow]  # after the filters
    total: int
    by_status: dict[str, int]
    by_outcome: dict[str, int]  # routed, rejected, failed:<Error>, ...
    errors: list[str]  # the named errors seen, for the outcome filter
    version: str  # changes whenever what the table shows changes (the page's ETag)
    reading: int = 0  # executions listed but not described yet (their key or error still to come)
    undecided: int = 0  # of those, how many the filters cannot place yet (not shown until read)


def outcome_label(row: ExecutionRow) -> str:
    if row.outcome == "failed" and row.error:
        return f"failed:{row.error}"
    if row.reading and (not row.outcome or row.outcome == "failed"):
        return "ended, being read"  # rejected or failed: its error says which
    return row.outcome


def executions_view(store: ConsoleStore, filters: Filters) -> ExecutionsView:
    rows = store.executions()
    decisions = [(row, filters.keep(row)) for row in rows]
    shown = [row for row, keep in decisions if keep]
    by_outcome = Counter(outcome_label(r) for r in rows)
    digest = hashlib.sha256(repr(filters).encode())
    for row in shown:
        digest.update(f"{row.arn}|{row.status}|{row.outcome}|{row.error}|{row.reading}|{row.key}\n".encode())
    undecided = sum(1 for _, keep in decisions if keep is None)
    reading = sum(1 for r in rows if r.reading)
    digest.update(f"{reading}|{undecided}".encode())
    return ExecutionsView(
        rows=shown,
        total=len(rows),
        by_status=dict(Counter(r.status for r in rows)),
        by_outcome=dict(sorted(by_outcome.items())),
        errors=sorted({r.error for r in rows if r.error}),
        version=digest.hexdigest()[:16],
        reading=reading,
        undecided=undecided,
    )


@dataclass
class ExecutionView:
    row: ExecutionRow
    described: dict
    graph: LaidOutGraph
    path: ExecutionPath
    states: dict[str, dict]  # node id -> what a click shows
    event: object  # the execution's input
    correlation_id: str | None
    scores: list[float] | None
    classes: tuple[str, ...]
    threshold: float | None
    image: tuple[str, str] | None  # (bucket, key) of the image, when the input names one
    map_runs: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)  # a batch's items with their outcome
    summary_location: str | None = None
    summary: dict | None = None

    @property
    def is_batch(self) -> bool:
        return self.row.machine == BATCH_MACHINE

    def status_of(self, node_id: str) -> str:
        run = self.path.runs.get(node_id)
        return run.status if run else NOT_RUN


def execution_view(store: ConsoleStore, arn: str) -> ExecutionView:
    described = store.execution(arn)
    machine = store.machine_of(described["stateMachineArn"])
    row = row_of(machine, described)
    graph = graph_of(store.definition(arn))
    path = read_history(store.history(arn), described["status"], graph)
    event = parse_input(described.get("input"))
    view = ExecutionView(
        row=row,
        described=described,
        graph=graph,
        path=path,
        states={},
        event=event,
        correlation_id=str(event["id"]) if isinstance(event, dict) and event.get("id") else None,
        scores=scores_of(path.runs),
        classes=CLASSES,
        threshold=float(store.outputs["ConfidenceThreshold"]) if store.outputs.get("ConfidenceThreshold") else None,
        image=(str(event["s3_bucket"]), str(event["s3_key"]))
        if isinstance(event, dict) and event.get("s3_bucket") and event.get("s3_key")
        else None,
    )
    if view.is_batch:
        add_batch(store, view)
    for node in graph.states:
        run = path.runs.get(node.id)
        details = run.details() if run else {"name": node.name, "status": NOT_RUN, "attempts": 0}
        details["type"] = node.type
        details["items"] = path.item_counts.get(node.id)
        view.states[node.id] = details
    return view


def add_batch(store: ConsoleStore, view: ExecutionView) -> None:
    """A Distributed Map's Map Run (counts), its items' outcomes (inline in the Map state's output) and the
    summary the batch wrote to S3."""
    view.map_runs = store.map_runs(view.row.arn)
    map_states = [n for n in view.graph.states if n.type == "Map" and n.parent is None]
    for node in map_states:
        run = view.path.runs.get(node.id)
        output = run.output if run else None
        results = output.get("results") if isinstance(output, dict) else None
        if isinstance(results, list):
            view.items = [r for r in results if isinstance(r, dict)]
        colour_items(view.path, view.graph, node.id, results)
    summarize = next(
        (r for r in view.path.runs.values() if isinstance(r.output, dict) and "summary_location" in r.output), None
    )
    if summarize is not None:
        view.summary_location = str(summarize.output["summary_location"])
    elif isinstance(view.event, dict) and view.event.get("bucket"):
        view.summary_location = f"s3://{view.event['bucket']}/{SUMMARY_PREFIX}{view.row.name}.json"
    if view.summary_location:
        view.summary = store.batch_summary(view.summary_location)
