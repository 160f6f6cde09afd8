"""The traps of a course solution: what runs on the emulator but fails on AWS, or fails here for a reason its
error hides, found in the Lambda sources (read with `ast`, never run) and the definition before anything is
created. Each comes with what AWS would do and the one-line fix. `explain_failure` says the same for an error
an execution reported, when its message shows one of them."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass

from scones.solution.definition import LambdaTask, Mapped, find_state, query_language

# Trap identifiers, one per kind (the tests and the docs name them).
BYTES_RESULT = "bytes-result"
BODY_STRING = "body-is-a-string"
SWALLOWED = "exception-swallowed"
ACCEPT = "accept-not-json"
RUNTIME_ENDPOINT = "runtime-endpoint-overridden"
MISSING_PATH = "path-selects-nothing"
SAGEMAKER_SDK = "sagemaker-sdk-import"

RUNTIME_SERVICES = ("sagemaker-runtime", "runtime.sagemaker")
JSON_TYPES = ("application/json", "*/*")


@dataclass(frozen=True)
class Trap:
    kind: str
    where: str  # file:line, or the state's name
    found: str  # what is there
    on_aws: str  # what AWS does with it
    fix: str  # the one-line fix

    def lines(self) -> list[str]:
        return [f"[{self.kind}] {self.where}: {self.found}", f"    on AWS: {self.on_aws}", f"    fix: {self.fix}"]


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _called_name(call: ast.Call) -> str:
    function = call.func
    return (
        function.attr if isinstance(function, ast.Attribute) else function.id if isinstance(function, ast.Name) else ""
    )


def _constant(node: ast.AST | None, constants: dict[str, object]) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def module_constants(tree: ast.Module) -> dict[str, object]:
    """NAME = "literal" at the module's top level (where solutions keep ENDPOINT and THRESHOLD)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def returned_dicts(function: ast.FunctionDef) -> list[ast.Dict] | None:
    """The dict literals `function` returns; None when one of its returns is anything else (not known here)."""
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Return):
            if not isinstance(node.value, ast.Dict):
                return None
            found.append(node.value)
    return found


def literal_keys(node: ast.Dict) -> set[str] | None:
    """The keys of a dict literal; None when it spreads another mapping (`{**event, ...}`): not all known."""
    if any(key is None for key in node.keys):
        return None
    return {key.value for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)}


def check_sources(mapped: list[Mapped]) -> list[Trap]:
    """The traps in the handlers' source files (each file checked once)."""
    traps: list[Trap] = []
    seen = set()
    body_producers = [m for m in mapped if _returns_json_string_body(m.handler.function_node())]
    for item in mapped:
        handler = item.handler
        if handler.file not in seen:
            seen.add(handler.file)
            traps += _file_traps(handler.file.name, handler.tree)
        if body_producers and not any(p.handler == handler for p in body_producers):
            traps += _body_readers(handler.file.name, handler.function_node(), body_producers[0])
    return traps


def _file_traps(name: str, tree: ast.Module) -> list[Trap]:
    traps = []
    parents = _parents(tree)
    constants = module_constants(tree)
    decoded = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "decode" and isinstance(node.value, ast.Name)
    }
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m == "sagemaker" or m.startswith("sagemaker.") for m in modules):
                traps.append(
                    Trap(
                        SAGEMAKER_SDK,
                        where,
                        "imports the SageMaker Python SDK",
                        "the Lambda Python runtime has boto3 but not the `sagemaker` package: the function fails to "
                        "start (Runtime.ImportModuleError) unless a layer provides it (here the emulator's Python "
                        "may have it, so it runs)",
                        "call boto3.client('sagemaker-runtime').invoke_endpoint(...), or add a layer with the SDK",
                    )
                )
        if not isinstance(node, ast.Call):
            continue
        called = _called_name(node)
        if called == "b64encode":
            parent = parents.get(node)
            decoded_here = isinstance(parent, ast.Attribute) and parent.attr == "decode"
            assigned = parent if isinstance(parent, ast.Assign) else None
            names = [t.id for t in assigned.targets if isinstance(t, ast.Name)] if assigned else []
            wrapped = isinstance(parent, ast.Call) and _called_name(parent) == "str"
            if not decoded_here and not wrapped and not (names and set(names) <= decoded):
                traps.append(
                    Trap(
                        BYTES_RESULT,
                        where,
                        "base64.b64encode(...) gives bytes, which go into the result undecoded",
                        "Lambda cannot turn bytes into the JSON result: the invocation fails with "
                        "Runtime.MarshalError (Unable to marshal response: Object of type bytes is not JSON "
                        "serializable); ministack reports it as Runtime.HandlerError",
                        "base64.b64encode(data).decode('utf-8')",
                    )
                )
        elif called == "client" and node.args:
            service = _constant(node.args[0], constants)
            if service in RUNTIME_SERVICES and _keyword(node, "endpoint_url") is not None:
                traps.append(
                    Trap(
                        RUNTIME_ENDPOINT,
                        where,
                        f"the {service} client is given its own endpoint_url, so the function does not use the "
                        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME this command sets for it (the model server)",
                        "boto3 finds SageMaker Runtime itself; a URL set here (an emulator's, say) is called "
                        "instead. An emulator has no SageMaker Runtime: InvokeEndpoint there gets a bare 400",
                        f"boto3.client('{service}') without endpoint_url",
                    )
                )
        elif called == "invoke_endpoint":
            accept = _constant(_keyword(node, "Accept"), constants)
            if isinstance(accept, str) and accept not in JSON_TYPES:
                traps.append(
                    Trap(
                        ACCEPT,
                        where,
                        f"InvokeEndpoint asks for Accept: {accept}, but the model answers JSON probabilities",
                        "SageMaker hands Accept to the model container, and a container that cannot answer in that "
                        "type refuses it: the local model server answers 406 NotAcceptable (a ModelError, 424)",
                        "Accept='application/json' (or leave Accept out)",
                    )
                )
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and isinstance(inner.value, ast.Dict):
                    status = _status_code(inner.value)
                    if isinstance(status, int) and status >= 400:
                        traps.append(
                            Trap(
                                SWALLOWED,
                                f"{name}:{inner.lineno}",
                                f"the exception is caught and returned as statusCode {status}, so the function "
                                "succeeds",
                                "Step Functions sees a successful invocation and goes on: no Retry or Catch sees the "
                                "error, and it surfaces one state later as another one (a threshold error, "
                                "'NoneType' object has no attribute ...) that hides the cause",
                                "raise (let the exception propagate, so the state fails with its name)",
                            )
                        )
    return traps


def _status_code(node: ast.Dict) -> object:
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "statusCode" and isinstance(value, ast.Constant):
            return value.value
    return None


def _returns_json_string_body(function: ast.FunctionDef) -> bool:
    """Whether `function` returns `{"body": json.dumps(...)}` somewhere."""
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "body"
                    and isinstance(value, ast.Call)
                    and _called_name(value) == "dumps"
                ):
                    return True
    return False


def _body_readers(name: str, function: ast.FunctionDef, producer: Mapped) -> list[Trap]:
    """`event["body"]["..."]` or `event["body"].get(...)` in a handler whose input `body` is a JSON string."""
    event = function.args.args[0].arg if function.args.args else "event"
    traps = []
    for node in ast.walk(function):
        inner = node.value if isinstance(node, ast.Subscript | ast.Attribute) else None
        if not (isinstance(inner, ast.Subscript) and isinstance(inner.value, ast.Name) and inner.value.id == event):
            continue
        if not (isinstance(inner.slice, ast.Constant) and inner.slice.value == "body"):
            continue
        if isinstance(node, ast.Attribute) and node.attr != "get":
            continue
        traps.append(
            Trap(
                BODY_STRING,
                f"{name}:{node.lineno}",
                f"reads {event}['body'] as an object, but {producer.handler.label} returns body as a JSON string "
                "(json.dumps)",
                "the read raises TypeError (string indices must be integers), or .get fails with AttributeError: "
                "the same on AWS; a handler that catches it reports its own error instead (a threshold error, "
                "for a filter) and hides this one",
                f"json.loads({event}['body'])['inferences'] (or return body as an object)",
            )
        )
        break
    return traps


def check_definition(definition: dict, tasks: list[LambdaTask], mapped: list[Mapped]) -> list[Trap]:
    """`OutputPath: $.Payload.<key>` (or a ResultSelector's `$.Payload.<key>`) on a function whose every return is
    a dict literal without that key: AWS fails the state with States.Runtime; ministack passes null on."""
    traps = []
    handlers = {m.function: m.handler for m in mapped}
    for task in tasks:
        state = find_state(definition, task.state) or {}
        if query_language(definition, state) != "JSONPath" or task.field == "Resource":
            continue
        selections = [("OutputPath", state.get("OutputPath"))]
        selector = state.get("ResultSelector")
        if isinstance(selector, dict):
            selections += [("ResultSelector", v) for k, v in selector.items() if k.endswith(".$")]
        returns = returned_dicts(handlers[task.function].function_node())
        if not returns:
            continue
        for field, path in selections:
            if not isinstance(path, str) or not path.startswith("$.Payload."):
                continue
            key = path.removeprefix("$.Payload.").split(".")[0].split("[")[0]
            keys = [literal_keys(r) for r in returns]
            if all(k is not None and key not in k for k in keys):
                returned = sorted(set().union(*keys)) if keys else []
                traps.append(
                    Trap(
                        MISSING_PATH,
                        f"state {task.state!r}",
                        f"{field} {path}, but {handlers[task.function].label} returns no {key!r} "
                        f"(its results have {', '.join(returned) or 'no keys'})",
                        "the state fails with States.Runtime (Invalid path), which no Retry or Catch handles; "
                        "ministack passes null on instead, so the error shows one state later (cloud/EMULATORS.md)",
                        f"{field}: $.Payload (or return {{'{key}': ...}})",
                    )
                )
    return traps


def endpoint_names(mapped: list[Mapped]) -> list[tuple[str, str]]:
    """(handler, endpoint name) for each InvokeEndpoint whose EndpointName is a literal or a module constant."""
    found = []
    for item in mapped:
        constants = module_constants(item.handler.tree)
        for node in ast.walk(item.handler.function_node()):
            if isinstance(node, ast.Call) and _called_name(node) == "invoke_endpoint":
                name = _constant(_keyword(node, "EndpointName"), constants)
                if isinstance(name, str):
                    found.append((item.handler.label, name))
    return found


# --- failures an execution reported, explained -------------------------------------------------------------


def explain_failure(error: str | None, cause: str | None) -> list[str]:
    """Why a state failed, when its error or message shows a known trap; [] when it does not."""
    text = f"{error or ''} {cause or ''}"
    message = cause or ""
    try:
        payload = json.loads(cause or "")
        if isinstance(payload, dict):
            message = str(payload.get("errorMessage", cause))
    except (TypeError, ValueError):
        pass
    found = []
    if "MarshalError" in text or "not JSON serializable" in text:
        found.append(
            f"[{BYTES_RESULT}] the function returned something JSON cannot hold (bytes, most often): AWS fails it "
            "with Runtime.MarshalError. Fix: base64.b64encode(data).decode('utf-8')"
        )
    if "string indices must be integers" in text or "'str' object has no attribute 'get'" in text:
        found.append(
            f"[{BODY_STRING}] a handler indexed a string as an object: an input's `body` is a JSON string. Fix: "
            "json.loads(event['body'])"
        )
    if "'NoneType'" in text:
        found.append(
            f"[{SWALLOWED}/{MISSING_PATH}] the state received null: the previous one returned a statusCode 500 "
            "instead of raising, or selected a path its result lacks (AWS fails that state with States.Runtime; "
            "ministack passes null on)"
        )
    if "406" in text or "NotAcceptable" in text:
        found.append(
            f"[{ACCEPT}] the model server refused the Accept type (406): it answers application/json. Fix: "
            "Accept='application/json'"
        )
    reached_emulator = (
        "(400)" in text and "not found" not in message
    ) or "not included in your current license" in text
    if "InvokeEndpoint" in text and reached_emulator:
        found.append(
            f"[{RUNTIME_ENDPOINT}] InvokeEndpoint was answered by the emulator (ministack: a bare 400; LocalStack: "
            "InternalFailure), which has no SageMaker Runtime, not by the model server. Fix: create the client "
            "without endpoint_url (this command sets AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for every function)"
        )
    if "States.Runtime" in text and ("Invalid path" in text or "No results for path" in text):
        found.append(
            f"[{MISSING_PATH}] a JSONPath of the definition selects nothing in the data: AWS fails the execution "
            "there with States.Runtime, whatever the Retry or Catch"
        )
    if "Installation of java" in text:
        found.append(
            "LocalStack evaluates JSONata with a Java 21 it downloads on first use, and could not: the emulator's "
            "limit, not your definition's (cloud/EMULATORS.md). Run on the embedded emulator (ministack)"
        )
    return found


def explain_output(result: object) -> list[str]:
    """Why a state that succeeded did not: a Lambda result (its Payload) carrying an error status code."""
    payload = result.get("Payload", result) if isinstance(result, dict) else None
    status = payload.get("statusCode") if isinstance(payload, dict) else None
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        swallowed = [
            f"[{SWALLOWED}] the function returned statusCode {status}: it caught an error and succeeded, so the "
            "workflow went on without it (on AWS too). Fix: raise instead of returning the error"
        ]
        return swallowed + [w for w in explain_failure(None, json.dumps(payload)) if f"[{SWALLOWED}" not in w]
    return []


def explain_input(state_input: object) -> list[str]:
    """Why a state failed on an input that is a previous state's error result (`statusCode` 400 or more)."""
    status = state_input.get("statusCode") if isinstance(state_input, dict) else None
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return [
            f"[{SWALLOWED}] this state's input is an earlier state's error result (statusCode {status}): the error "
            "reported here hides that one (see its output above)"
        ]
    return []
