"""An execution's path, read from its event history: every state it entered, with its input, its output, the
raw result of its task and its errors; the JSONPath selections that would have failed it on AWS
(definition.check_selections); and all of it as text, `image_data` elided. Pure functions of the history and
the definition: no AWS call here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from scones.solution.definition import PathFailure, apply_result_path, check_selections, find_state, query_language
from scones.solution.traps import explain_failure, explain_input, explain_output
from scones.workflow.execution import event_details, parse_json

LONG_STRING_CHARS = 1000  # longer strings are shown cut, with their length (error messages are kept whole)
SHOWN_JSON_CHARS = 1500  # one input or output line at most


@dataclass
class StateStep:
    name: str
    kind: str  # Task, Pass, Choice, Fail, ... (from the history's event type)
    input: object = None
    output: object = None
    exited: bool = False
    result: object = None  # the task's result as the integration returned it (before ResultSelector/OutputPath)
    errors: list[tuple[str | None, str | None]] = field(default_factory=list)
    path_failures: list[PathFailure] = field(default_factory=list)


@dataclass
class Trace:
    execution_arn: str
    status: str  # as the emulator reports it
    error: str | None
    cause: str | None
    steps: list[StateStep]
    seconds: float = 0.0

    @property
    def aws_failure(self) -> PathFailure | None:
        """The first selection AWS would have failed the execution on, where the emulator went on."""
        return next((f for step in self.steps for f in step.path_failures), None)

    @property
    def succeeded(self) -> bool:
        """Succeeded here, and would have on AWS as far as the selections tell."""
        return self.status == "SUCCEEDED" and self.aws_failure is None


def read_trace(
    execution_arn: str, status: str, error: str | None, cause: str | None, events: list[dict], definition: dict
) -> Trace:
    """The states the execution went through, in order, each checked against its definition."""
    steps: list[StateStep] = []
    open_steps: list[StateStep] = []
    for event in events:
        kind, details = event["type"], event_details(event)
        if kind.endswith("StateEntered"):
            entered = parse_json(details.get("input"))
            step = StateStep(details.get("name", "?"), kind.removesuffix("StateEntered"), entered)
            steps.append(step)
            open_steps.append(step)
        elif kind.endswith("StateExited"):
            step = next((s for s in reversed(open_steps) if s.name == details.get("name")), None)
            if step is not None:
                step.output, step.exited = parse_json(details.get("output")), True
                open_steps.remove(step)
        elif kind in ("TaskSucceeded", "LambdaFunctionSucceeded") and open_steps:
            open_steps[-1].result = parse_json(details.get("output"))
        elif kind.endswith("Failed") and not kind.startswith("Execution") and "error" in details and open_steps:
            open_steps[-1].errors.append((details.get("error"), details.get("cause")))
    for step in steps:
        state = find_state(definition, step.name)
        if state is None or query_language(definition, state) != "JSONPath" or step.kind != "Task":
            continue
        if step.result is None:
            continue
        before_output = None if "ResultSelector" in state else apply_result_path(state, step.input, step.result)
        step.path_failures = check_selections(step.name, state, step.input, step.result, before_output)
    return Trace(execution_arn, status, error, cause, steps)


def elided(value: object) -> object:
    """`value` with every `image_data` replaced by its length, also inside JSON strings (a `body`)."""
    if isinstance(value, dict):
        return {
            k: (f"<{len(v)} characters>" if k == "image_data" and isinstance(v, str) and v else elided(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [elided(v) for v in value]
    if isinstance(value, str) and value[:1] in "{[" and len(value) > 2:
        parsed = parse_json(value)
        if isinstance(parsed, dict | list):
            return json.dumps(elided(parsed))
    if isinstance(value, str) and len(value) > LONG_STRING_CHARS:
        return f"{value[:40]}... ({len(value)} characters)"
    return value


def shown(value: object) -> str:
    text = json.dumps(elided(value), ensure_ascii=False)
    return text if len(text) <= SHOWN_JSON_CHARS else f"{text[:SHOWN_JSON_CHARS]}... ({len(text)} characters)"


def error_text(error: str | None, cause: str | None) -> str:
    payload = parse_json(cause)
    if isinstance(payload, dict) and "errorMessage" in payload:
        kind = payload.get("errorType") or error
        return f"{error}: {kind}: {payload['errorMessage']}" if kind != error else f"{error}: {payload['errorMessage']}"
    return f"{error}: {cause}" if cause else str(error)


def format_trace(trace: Trace, title: str) -> list[str]:
    """The execution as text: its verdict, then each state with its input, output and errors explained."""
    failure = trace.aws_failure
    verdict = trace.status if trace.status != "SUCCEEDED" or failure is None else "SUCCEEDED here"
    lines = [f"{title}: {verdict} in {trace.seconds:.2f} s ({trace.execution_arn.rsplit(':', 1)[-1]})"]
    if failure is not None:
        lines.append(f"  on AWS: FAILED at {failure.state!r} with States.Runtime ({failure.field} {failure.path})")
    for number, step in enumerate(trace.steps, 1):
        lines.append(f"  {number}. {step.name} ({step.kind})")
        lines.append(f"       input   {shown(step.input)}")
        for error, cause in step.errors:
            lines.append(f"       error   {error_text(error, cause)}")
            lines += [f"       why     {why}" for why in explain_failure(error, cause)]
            lines += [f"       why     {why}" for why in explain_input(step.input)]
        if step.exited:
            lines.append(f"       output  {shown(step.output)}")
            lines += [
                f"       why     {why}"
                for why in explain_output(step.result if step.result is not None else step.output)
            ]
        for path_failure in step.path_failures:
            lines.append(f"       on AWS  {path_failure.explain()}")
            lines.append(f"               {path_failure.aws_message()}")
            if step.exited and step.output is None:
                lines.append("               the emulator passed null on instead (cloud/EMULATORS.md)")
    if trace.status != "SUCCEEDED":
        last_errors = {e for step in trace.steps for e in step.errors}
        if (trace.error, trace.cause) not in last_errors:
            lines.append(f"  failed  {error_text(trace.error, trace.cause)}")
            lines += [f"  why     {why}" for why in explain_failure(trace.error, trace.cause)]
    return lines
