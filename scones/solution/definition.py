"""A solution's state machine definition (ASL, JSONPath or JSONata, as the console exports it): its Lambda tasks
in the order of the path, which handler each one runs, the definition with its Lambda ARNs pointing at the
functions created here, and the JSONPath selections (InputPath, OutputPath, ResultSelector) evaluated the way
AWS does, so that one that selects nothing is named as the `States.Runtime` failure AWS would report."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from scones.solution.sources import Handler, name_key

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
_LAMBDA_ARN = re.compile(r"^arn:[\w-]+:lambda:[\w-]*:\d*:function:(?P<name>[\w-]+)(?::[\w$-]+)?$")
_PARTIAL_ARN = re.compile(r"^(?:\d+:)?function:(?P<name>[\w-]+)(?::[\w$-]+)?$")
_PLACEHOLDER = re.compile(r"^\$\{(?P<name>\w+)\}$")


class DefinitionError(ValueError):
    """The definition is not JSON, has no States, or calls a Lambda this command cannot map."""


class MappingError(ValueError):
    """A Lambda of the definition matches no handler, or several; the message gives the --map to settle it."""


@dataclass(frozen=True)
class LambdaTask:
    """One Task state calling a Lambda, and where in the state its function is named."""

    state: str
    function: str  # the function name the definition uses (from its ARN, or the placeholder's name)
    field: str  # "Parameters", "Arguments" (the FunctionName inside them) or "Resource" (a function ARN)


@dataclass(frozen=True)
class Mapped:
    function: str  # the definition's function name
    handler: Handler
    reason: str  # "--map", "by name" or "by order"


def load_definition(path: Path) -> dict:
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DefinitionError(f"{path}: {e}") from e
    except json.JSONDecodeError as e:
        raise DefinitionError(f"{path}: not JSON (line {e.lineno}: {e.msg}); export the definition as JSON") from e
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        raise DefinitionError(f"{path}: no `States` object: not a state machine definition")
    if definition.get("StartAt") not in definition["States"]:
        raise DefinitionError(f"{path}: StartAt {definition.get('StartAt')!r} names no state")
    return definition


def states_in_path_order(states: dict, start: str) -> list[str]:
    """State names as an execution meets them from `start` (Next, Default, Choices, Catch), then any others."""
    order: list[str] = []
    pending = [start]
    while pending:
        name = pending.pop(0)
        if name in order or name not in states:
            continue
        order.append(name)
        state = states[name]
        following = [state.get("Next"), state.get("Default")]
        following += [choice.get("Next") for choice in state.get("Choices", []) if isinstance(choice, dict)]
        following += [catch.get("Next") for catch in state.get("Catch", []) if isinstance(catch, dict)]
        pending += [n for n in following if isinstance(n, str)]
    return order + [n for n in states if n not in order]


def function_name(reference: str) -> str | None:
    """The function name in a Lambda ARN, a partial ARN, a `${Placeholder}` or a bare name; None for a path."""
    for pattern in (_LAMBDA_ARN, _PARTIAL_ARN, _PLACEHOLDER):
        if match := pattern.match(reference):
            return match.group("name")
    if re.fullmatch(r"[\w-]{1,64}", reference):
        return reference
    return None


def lambda_tasks(definition: dict) -> list[LambdaTask]:
    """The Task states that call a Lambda, in path order, nested ones (Parallel, Map) after their parent."""
    tasks: list[LambdaTask] = []

    def visit(states: dict, start: str) -> None:
        for name in states_in_path_order(states, start):
            state = states[name]
            if not isinstance(state, dict):
                continue
            if state.get("Type") == "Task":
                task = lambda_task(name, state)
                if task is not None:
                    tasks.append(task)
            for branch in [*state.get("Branches", []), state.get("ItemProcessor"), state.get("Iterator")]:
                if isinstance(branch, dict) and isinstance(branch.get("States"), dict):
                    visit(branch["States"], branch.get("StartAt"))

    visit(definition["States"], definition["StartAt"])
    return tasks


def lambda_task(name: str, state: dict) -> LambdaTask | None:
    resource = state.get("Resource", "")
    if isinstance(resource, str) and resource.startswith(LAMBDA_INVOKE):
        for field in ("Parameters", "Arguments"):
            arguments = state.get(field)
            if not isinstance(arguments, dict):
                continue
            if "FunctionName.$" in arguments:
                raise DefinitionError(
                    f"state {name!r} takes its function from the input (FunctionName.$): give it a fixed function"
                )
            reference = arguments.get("FunctionName")
            if isinstance(reference, str) and (function := function_name(reference)):
                return LambdaTask(name, function, field)
            if isinstance(reference, str):
                raise DefinitionError(f"state {name!r}: FunctionName {reference!r} names no function")
        raise DefinitionError(f"state {name!r} calls lambda:invoke without a FunctionName")
    if isinstance(resource, str) and (match := _LAMBDA_ARN.match(resource)):
        return LambdaTask(name, match.group("name"), "Resource")
    return None


def map_functions(tasks: list[LambdaTask], handlers: list[Handler], explicit: dict[str, str]) -> list[Mapped]:
    """Which handler each function of the definition runs: --map first (FUNCTION=HANDLER, the handler named
    as `file.py:function`, a function name, or a file or folder name), then by name, then by order when what is
    left pairs up one to one. MappingError with the --map to add when it cannot be decided."""
    functions = list(dict.fromkeys(task.function for task in tasks))
    if not functions:
        raise MappingError("the definition calls no Lambda function: nothing to map the sources to")
    unknown = set(explicit) - set(functions)
    if unknown:
        raise MappingError(
            f"--map names {', '.join(sorted(unknown))}, not a function of the definition ({', '.join(functions)})"
        )
    mapped: dict[str, Mapped] = {}
    for function, wanted in explicit.items():
        matches = [
            h
            for h in handlers
            if wanted in (h.label, h.function, h.file.name, h.source.name, f"{h.file.name}:{h.function}")
        ]
        if len(matches) != 1:
            found = "no handler" if not matches else f"{len(matches)} handlers ({', '.join(h.label for h in matches)})"
            raise MappingError(
                f"--map {function}={wanted}: {found} of the sources is named {wanted!r}; "
                f"the handlers: {describe(handlers)}"
            )
        mapped[function] = Mapped(function, matches[0], "--map")
    free = [h for h in handlers if all(m.handler != h for m in mapped.values())]
    for function in functions:
        if function in mapped:
            continue
        key = name_key(function)
        candidates = [h for h in free if key and any(name_key(n) == key for n in h.names)]
        if not candidates:  # one name holding the other: `serialize.py` for `serializeImageData`
            candidates = [h for h in free if any(contains(name_key(n), key) for n in h.names)]
        if len(candidates) == 1 and all(m.handler != candidates[0] for m in mapped.values()):
            mapped[function] = Mapped(function, candidates[0], "by name")
    left = [f for f in functions if f not in mapped]
    free = [h for h in handlers if all(m.handler != h for m in mapped.values())]
    if left and len(left) == len(free):
        for function, handler in zip(left, free, strict=True):
            mapped[function] = Mapped(function, handler, "by order")
        left = []
    if left:
        raise MappingError(
            f"cannot tell which handler runs {', '.join(left)} (unmatched handlers: {describe(free) or 'none'}): "
            f"say it with --map, e.g. --map {left[0]}={free[0].label if free else 'FILE.py:HANDLER'}"
        )
    return [mapped[f] for f in functions]


MIN_CONTAINED_CHARS = 4  # shorter keys ("a", "fn1") say nothing when found inside another name


def contains(one: str, other: str) -> bool:
    shorter, longer = sorted((one, other), key=len)
    return len(shorter) >= MIN_CONTAINED_CHARS and shorter in longer


def describe(handlers: list[Handler]) -> str:
    return ", ".join(h.label for h in handlers)


def rewritten(definition: dict, tasks: list[LambdaTask], arns: dict[str, str]) -> dict:
    """The definition with each Lambda task calling the function created for it (`arns`: by definition name)."""
    result = copy.deepcopy(definition)
    by_state = {task.state: task for task in tasks}

    def visit(states: dict) -> None:
        for name, state in states.items():
            if not isinstance(state, dict):
                continue
            task = by_state.get(name)
            if task is not None and state.get("Type") == "Task":
                if task.field == "Resource":
                    state["Resource"] = arns[task.function]
                else:
                    state[task.field]["FunctionName"] = arns[task.function]
            for branch in [*state.get("Branches", []), state.get("ItemProcessor"), state.get("Iterator")]:
                if isinstance(branch, dict) and isinstance(branch.get("States"), dict):
                    visit(branch["States"])

    visit(result["States"])
    return result


def find_state(definition: dict, name: str) -> dict | None:
    """The state called `name`, nested ones included."""

    def visit(states: dict) -> dict | None:
        if name in states and isinstance(states[name], dict):
            return states[name]
        for state in states.values():
            if not isinstance(state, dict):
                continue
            for branch in [*state.get("Branches", []), state.get("ItemProcessor"), state.get("Iterator")]:
                if (
                    isinstance(branch, dict)
                    and isinstance(branch.get("States"), dict)
                    and (found := visit(branch["States"])) is not None
                ):
                    return found
        return None

    return visit(definition["States"])


def query_language(definition: dict, state: dict) -> str:
    return state.get("QueryLanguage") or definition.get("QueryLanguage") or "JSONPath"


# --- JSONPath selections, as AWS evaluates them ------------------------------------------------------------

_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
MISSING = object()


def select(path: str, data: object) -> object:
    """The value `path` selects in `data`, MISSING when a step finds nothing (AWS: States.Runtime), or
    NotImplemented for a path with filters, wildcards or slices (not checked here)."""
    if not isinstance(path, str) or not path.startswith("$"):
        return NotImplemented
    position, value = 1, data
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            return NotImplemented
        key, index, quoted, double = match.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return MISSING
            value = value[int(index)]
        else:
            field = key if key is not None else (quoted if quoted is not None else double)
            if not isinstance(value, dict) or field not in value:
                return MISSING
            value = value[field]
        position = match.end()
    return value


@dataclass(frozen=True)
class PathFailure:
    """A JSONPath selection that selects nothing: AWS fails the state with States.Runtime there."""

    state: str
    field: str  # InputPath, ResultSelector, OutputPath
    path: str
    where: str  # what it was applied to ("the state's input", "the task's result", "the state's output")
    keys: list[str]  # the keys that were there

    def aws_message(self) -> str:
        steps = "".join(f"['{step}']" for step in self.path.removeprefix("$.").split("."))
        return (
            f"States.Runtime: An error occurred while executing the state '{self.state}'. Invalid path "
            f"'{self.path}' : No results for path: ${steps}"
        )

    def explain(self) -> str:
        there = f"(keys there: {', '.join(self.keys)})" if self.keys else "(it is not an object with keys)"
        return (
            f"{self.field} {self.path} selects nothing in {self.where} {there}: AWS fails the state here with "
            f"States.Runtime, which no Retry or Catch handles"
        )


def check_selections(
    state_name: str, state: dict, state_input: object, task_result: object, state_output_before: object
) -> list[PathFailure]:
    """The JSONPath selections of one state run that would fail on AWS: InputPath on its input, the
    ResultSelector's paths on its task result, OutputPath on its output before OutputPath (ResultPath
    applied). A value not known (None) is not checked."""
    failures = []

    def check(field: str, path: object, data: object, where: str) -> None:
        if data is None or not isinstance(path, str):
            return
        if select(path, data) is MISSING:
            keys = sorted(data) if isinstance(data, dict) else []
            failures.append(PathFailure(state_name, field, path, where, keys))

    check("InputPath", state.get("InputPath"), state_input, "the state's input")
    selector = state.get("ResultSelector")
    if isinstance(selector, dict) and task_result is not None:
        for key, path in selector.items():
            if key.endswith(".$") and isinstance(path, str) and path.startswith("$") and not path.startswith("$$"):
                check("ResultSelector", path, task_result, "the task's result")
    check("OutputPath", state.get("OutputPath"), state_output_before, "the state's result")
    return failures


def apply_result_path(state: dict, state_input: object, result: object) -> object:
    """The state's output before OutputPath: `result` placed into the input at ResultPath (JSONPath states)."""
    result_path = state.get("ResultPath", "$")
    if result_path == "$":
        return result
    if result_path is None:
        return state_input
    steps = [m.group(1) or m.group(3) or m.group(4) for m in _STEP.finditer(result_path)]
    if not isinstance(state_input, dict) or not steps or any(s is None for s in steps):
        return None  # not checked
    output = copy.deepcopy(state_input)
    target = output
    for step in steps[:-1]:
        target = target.setdefault(step, {})
        if not isinstance(target, dict):
            return None
    target[steps[-1]] = result
    return output
