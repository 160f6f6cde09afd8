"""One deployed Lambda invoked alone (`scones invoke`): which function a name means, the invocation itself,
and what came back: the result or the named error, and the log lines of that invocation (the Invoke API's
log tail, which AWS, ministack and LocalStack all return)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from cloud.artifacts import LAMBDA_HANDLERS
from cloud.aws import AwsTarget
from cloud.stack import stack_resource_id
from lambdas.contract import error_name
from scones.errors import NotDeployedError, UsageProblemError

# The template's logical id of each function: "<Handler in CamelCase>Function", beside its "...CodeKey".
FUNCTIONS = {handler: parameter.removesuffix("CodeKey") + "Function" for parameter, handler in LAMBDA_HANDLERS.items()}


class UnknownFunctionError(UsageProblemError):
    """The name given is none of the stack's functions."""


class EventFileError(UsageProblemError):
    """--event names no readable file, or what it holds is not JSON."""


@dataclass(frozen=True)
class Invocation:
    function_name: str
    result: object  # what the handler returned, or the error payload when it raised
    error: str | None  # the named error (LowConfidenceError, ...), None when the handler returned
    error_message: str | None
    log_lines: list[str]
    seconds: float


def handler_of(name: str) -> str:
    """The handler module a user's name for a function means: `classify_image`, `classify-image`,
    `ClassifyImageFunction`, or `lambdas.classify_image`."""
    wanted = name.strip().removeprefix("lambdas.").replace("-", "_")
    for handler, logical_id in FUNCTIONS.items():
        if wanted in (handler, logical_id) or wanted.lower() == logical_id.lower().removesuffix("function"):
            return handler
    raise UnknownFunctionError(f"no function {name!r} in the stack: choose one of {', '.join(FUNCTIONS)}")


def deployed_function_name(target: AwsTarget, stack_name: str, handler: str) -> str:
    """The deployed name of the stack's function for `handler` (the template names it after the stack)."""
    physical = stack_resource_id(target.client("cloudformation"), stack_name, FUNCTIONS[handler])
    if not physical:
        raise NotDeployedError(f"stack {stack_name} has no {FUNCTIONS[handler]}: run `scones deploy`")
    return physical


def read_event(source: str | None, stdin_text: str | None = None) -> object:
    """The event: the JSON in file `source`, on stdin for "-" (`stdin_text`), or {} when there is none."""
    if source is None:
        return {}
    if source == "-":
        text, where = stdin_text or "", "stdin"
    else:
        path = Path(source)
        try:
            text, where = path.read_text(), str(path)
        except OSError as e:
            raise EventFileError(f"--event {source}: cannot read it ({e.strerror or e})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise EventFileError(f"the event in {where} is not JSON: {e}") from e


def invoke_function(target: AwsTarget, function_name: str, event: object) -> Invocation:
    """Invoke `function_name` synchronously with `event`; its result or named error, and its log lines."""
    started = time.monotonic()
    response = target.client("lambda").invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        LogType="Tail",
        Payload=json.dumps(event).encode(),
    )
    seconds = time.monotonic() - started
    raw = response["Payload"].read()
    try:
        result = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        result = raw.decode(errors="replace")
    tail = base64.b64decode(response.get("LogResult") or b"").decode(errors="replace")
    log_lines = [line for line in tail.splitlines() if line.strip()]
    if not response.get("FunctionError"):
        return Invocation(function_name, result, None, None, log_lines, seconds)
    payload = result if isinstance(result, dict) else {}
    message = str(payload.get("errorMessage", result))
    # Named also where an emulator reports the handler's exception unnamed (lambdas/contract.py error_name).
    name = error_name(payload.get("errorType") or response["FunctionError"], json.dumps(payload))
    return Invocation(function_name, result, name, message, log_lines, seconds)
