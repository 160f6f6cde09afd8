"""The commands of the inner loop beside `scones up --watch`: `invoke`, one deployed function alone."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cloud.defaults import DEFAULT_STACK_NAME, DEFAULT_WORKDIR
from scones.cli.common import AsJson, StackName, Workdir, app, recorded_state, reports_errors, say
from scones.errors import EXIT_REJECTED, StepFailedError
from scones.local.connection import TargetKind, connect, deployed_outputs
from scones.workflow.invoke import (
    FUNCTIONS,
    Invocation,
    deployed_function_name,
    handler_of,
    invoke_function,
    read_event,
)

LONG_VALUE_CHARS = 80  # image_data and its like are shortened in the text output (--json prints them whole)


class FunctionFailedError(StepFailedError):
    """The invoked function raised; the message is its named error and what it said."""


class FunctionRejectedError(FunctionFailedError):
    """The invoked filter rejected the scores as low confidence (the exit code `classify` uses for it)."""

    exit_code = EXIT_REJECTED


@app.command(
    short_help="Invoke one deployed function with an event.",
    epilog="\b\nExamples:\n"
    "  scones invoke classify_image --event tests/events/classify_image.json\n"
    "  scones invoke filter-low-confidence --event tests/events/low_confidence.json   # exit 4\n"
    "  echo '{}' | scones invoke serialize_image_data --event -",
)
@reports_errors
def invoke(
    function: Annotated[str, typer.Argument(help=f"one of {', '.join(FUNCTIONS)} (or with hyphens)")],
    event: Annotated[
        str | None, typer.Option("--event", help="a JSON file holding the event, or - for stdin [default: {}]")
    ] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: StackName = None,
    as_json: AsJson = False,
) -> None:
    """Invoke one function of the deployed stack with an event (the examples in tests/events/ work as they are)
    and print what it returned, or its named error, and the log lines of that invocation. Exit 1 when the
    function raised, 4 when it was the filter's LowConfidenceError."""
    handler = handler_of(function)
    payload = read_event(event, sys.stdin.read() if event == "-" else None)
    state = recorded_state(workdir, TargetKind.emulator)
    with connect(TargetKind.emulator, state) as connection:
        deployed_outputs(connection, stack_name, state)  # the stack is there, or the error says what to do
        name = stack_name or (state.stack_name if state else None) or DEFAULT_STACK_NAME
        invocation = invoke_function(connection.aws, deployed_function_name(connection.aws, name, handler), payload)
    if as_json:
        say(json.dumps(invocation_record(invocation), indent=2))
    else:
        say_invocation(invocation)
    if invocation.error:
        error = FunctionRejectedError if invocation.error == "LowConfidenceError" else FunctionFailedError
        message = invocation.error_message or ""
        raise error(message if message.startswith(invocation.error) else f"{invocation.error}: {message}")


def invocation_record(invocation: Invocation) -> dict:
    return {
        "function": invocation.function_name,
        "seconds": round(invocation.seconds, 3),
        "error": invocation.error,
        "error_message": invocation.error_message,
        "result": invocation.result,
        "log_lines": invocation.log_lines,
    }


def shortened(value: object) -> object:
    if isinstance(value, dict):
        return {k: shortened(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shortened(v) for v in value]
    if isinstance(value, str) and len(value) > LONG_VALUE_CHARS:
        return f"{value[:24]}... ({len(value)} characters)"
    return value


def say_invocation(invocation: Invocation) -> None:
    outcome = f"raised {invocation.error}" if invocation.error else "returned"
    say(f"{invocation.function_name} {outcome} in {invocation.seconds * 1000:.0f} ms")
    if not invocation.error:
        say(json.dumps(shortened(invocation.result), indent=2))
    say(f"log lines of this invocation ({len(invocation.log_lines)}):")
    for line in invocation.log_lines:
        say(f"  {line}")
