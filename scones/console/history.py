"""What an execution did, read from its event history: each state it entered with its input, output,
errors, attempts and duration, the status the graph colours it with, and the transitions it took. Pure
functions of the history and the definition: no AWS call here."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime

from lambdas.contract import LOW_CONFIDENCE_ERROR, Outcome, error_message, error_name
from scones.console.graph import END, START, LaidOutGraph
from scones.workflow.execution import event_details, parse_json

TRUNCATE_CHARS = 160  # a string longer than this (an image's base64) is shown cut, with its length

# The colours of the graph, one CSS class each (static/console.css).
SUCCEEDED, RETRIED, CAUGHT, REJECTED, FAILED, RUNNING, NOT_RUN = (
    "succeeded",
    "retried",
    "caught",
    "rejected",
    "failed",
    "running",
    "not-run",
)


@dataclass
class StateRun:
    """One state's visit in the execution (the last one, when a state is entered more than once)."""

    name: str
    entered: datetime | None = None
    exited: datetime | None = None
    input: object = None
    output: object = None
    attempts: int = 0  # task scheduled (1 + retries); 0 for states that call nothing
    errors: list[tuple[str, str]] = field(default_factory=list)  # (named error, message) per failed attempt
    raw_errors: list[tuple[str | None, str | None]] = field(default_factory=list)  # as the history says
    status: str = NOT_RUN

    @property
    def duration_ms(self) -> float | None:
        if self.entered is None or self.exited is None:
            return None
        return (self.exited - self.entered).total_seconds() * 1000

    def details(self) -> dict:
        """What a click on the state shows, every value a plain string or number (the page escapes them)."""
        last_error = self.raw_errors[-1] if self.raw_errors else (None, None)
        return {
            "name": self.name,
            "status": self.status,
            "attempts": self.attempts,
            "duration_ms": round(self.duration_ms, 1) if self.duration_ms is not None else None,
            "input": shown_json(self.input),
            "output": shown_json(self.output),
            "error": self.errors[-1][0] if self.errors else None,
            "reported_error": last_error[0],
            "cause": last_error[1],
            "errors": [f"attempt {i + 1}: {name}: {message}" for i, (name, message) in enumerate(self.errors)],
        }


@dataclass
class ExecutionPath:
    runs: dict[str, StateRun]  # by node id
    taken: set[tuple[str, str]]  # edges (source id, target id) the execution went along
    item_counts: dict[str, int] = field(default_factory=dict)  # a Map's item processor: items per end state


def truncated(value: object) -> object:
    if isinstance(value, str) and len(value) > TRUNCATE_CHARS:
        return f"{value[:TRUNCATE_CHARS]}... ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: truncated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [truncated(v) for v in value]
    return value


def shown_json(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(truncated(value), indent=2, ensure_ascii=False, sort_keys=False)


def read_history(events: list[dict], execution_status: str, graph: LaidOutGraph) -> ExecutionPath:
    """The states the execution entered (top-level states: a Distributed Map's items run as executions of
    their own), in order, with their status, and the transitions taken."""
    runs: dict[str, StateRun] = {}
    order: list[str] = []
    open_states: list[str] = []
    top_level = {n.id for n in graph.states if n.parent is None}
    for event in events:
        kind, details = event["type"], event_details(event)
        if kind.endswith("StateEntered") and details.get("name") in top_level:
            name = details["name"]
            run = runs[name] = StateRun(name, entered=event["timestamp"], input=parse_json(details.get("input")))
            order.append(name)
            open_states.append(name)
            run.status = RUNNING
        elif kind.endswith("StateExited") and details.get("name") in runs:
            run = runs[details["name"]]
            run.exited, run.output = event["timestamp"], parse_json(details.get("output"))
            if details["name"] in open_states:
                open_states.remove(details["name"])
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled") and open_states:
            runs[open_states[-1]].attempts += 1
        elif kind.endswith("Failed") and not kind.startswith("Execution") and open_states and "error" in details:
            run = runs[open_states[-1]]
            error, cause = details.get("error"), details.get("cause")
            run.raw_errors.append((error, cause))
            run.errors.append((error_name(error, cause), error_message(cause)))
    types = {n.id: n.type for n in graph.states}
    for position, name in enumerate(order):
        run = runs[name]
        later = position + 1 < len(order)
        failed_last = bool(run.errors) and (run.attempts == 0 or len(run.errors) >= run.attempts)
        if types.get(name) == "Fail":
            run.status = CAUGHT if position > 0 and runs[order[position - 1]].status == CAUGHT else FAILED
            run.exited = run.exited or run.entered
        elif failed_last and later:
            run.status = CAUGHT  # the error was caught: the execution went on to a Catch's state
        elif failed_last or (run.exited is None and execution_status not in ("RUNNING",)):
            named = run.errors[-1][0] if run.errors else None
            run.status = REJECTED if named == LOW_CONFIDENCE_ERROR else FAILED
        elif run.exited is None:
            run.status = RUNNING
        elif run.errors:
            run.status = RETRIED  # failed attempts, then a retry succeeded
        else:
            run.status = SUCCEEDED
    taken = set()
    if order:
        taken.add((START, order[0]))
    taken.update(itertools.pairwise(order))
    if order and execution_status == "SUCCEEDED":
        taken.add((order[-1], END))
    if order and types.get(order[-1]) == "Fail":
        taken.add((order[-1], END))
    return ExecutionPath(runs, taken)


def item_outcomes(results: object) -> dict[str, int]:
    """A Distributed Map's results (the items' outcomes, inline in the Map's output): how many items ended in
    each of the item processor's end states (statemachine/batch_classification.asl.json names them)."""
    counts = {"Routed": 0, "Rejected": 0, "Filter Failed": 0, "Item Failed": 0}
    for item in results if isinstance(results, list) else []:
        outcome = item.get("outcome") if isinstance(item, dict) else None
        if outcome == Outcome.ROUTED:
            counts["Routed"] += 1
        elif outcome == Outcome.REJECTED:
            counts["Rejected"] += 1
        elif outcome == Outcome.FAILED:
            counts["Filter Failed" if item.get("inferences") else "Item Failed"] += 1
    return counts


def colour_items(path: ExecutionPath, graph: LaidOutGraph, map_state: str, results: object) -> None:
    """Colour a Distributed Map's item processor by what its items did (its items run as executions of their
    own, outside this history): each end state with its count, the tasks as passed when any item got past them."""
    counts = item_outcomes(results)
    statuses = {"Routed": SUCCEEDED, "Rejected": CAUGHT, "Filter Failed": FAILED, "Item Failed": FAILED}
    failed_by_filter = [
        error_name(item.get("error"), item.get("cause"))
        for item in (results if isinstance(results, list) else [])
        if isinstance(item, dict) and item.get("outcome") == "failed" and item.get("inferences")
    ]
    if failed_by_filter and set(failed_by_filter) == {LOW_CONFIDENCE_ERROR}:
        # An emulator that drops error names (ministack) lands low confidence here, not in Rejected.
        statuses["Filter Failed"] = REJECTED
    inner = [n for n in graph.states if n.parent == map_state]
    reached_filter = counts["Routed"] + counts["Rejected"] + counts["Filter Failed"]
    for node in inner:
        count = counts.get(node.name)
        if count is not None:
            path.item_counts[node.id] = count
            if count:
                path.runs[node.id] = StateRun(node.name, status=statuses[node.name], attempts=0)
                path.taken.add((node.id, next(e.target for e in graph.edges if e.source == node.id)))
        elif node.type == "Task" and reached_filter:
            path.runs[node.id] = StateRun(node.name, status=SUCCEEDED)
    names = {n.name: n.id for n in inner}
    if reached_filter:
        chain = ["Serialize Image Data", "Classify Image", "Filter Low Confidence"]
        path.taken.add((map_state, names.get(chain[0], "")))
        path.taken.update((names.get(a, ""), names.get(b, "")) for a, b in itertools.pairwise(chain))
        for end in ("Routed", "Rejected", "Filter Failed"):
            if counts[end]:
                path.taken.add((names.get("Filter Low Confidence", ""), names.get(end, "")))
