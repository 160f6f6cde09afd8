"""A solution's definition: its Lambda tasks in path order, mapped to handlers, rewritten; JSONPath selections
evaluated as AWS does."""

from __future__ import annotations

import json

import pytest

from scones.solution.definition import (
    MISSING,
    DefinitionError,
    MappingError,
    apply_result_path,
    check_selections,
    function_name,
    lambda_tasks,
    load_definition,
    map_functions,
    rewritten,
    select,
)
from scones.solution.sources import read_sources

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}:$LATEST"


def task(function, next_state=None, field="Parameters"):
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        field: {"FunctionName": ARN.format(function)},
    }
    return {**state, "Next": next_state} if next_state else {**state, "End": True}


def definition(**states):
    return {"StartAt": next(iter(states)), "States": states}


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        (ARN.format("classifyImage"), "classifyImage"),
        ("arn:aws:lambda:eu-west-1:123:function:fn-1", "fn-1"),
        ("function:fn", "fn"),
        ("${ClassifyImageFunctionArn}", "ClassifyImageFunctionArn"),
        ("plain-name", "plain-name"),
        ("$.not.a.name", None),
    ],
)
def test_function_names_come_from_arns_placeholders_and_names(reference, name):
    assert function_name(reference) == name


def test_tasks_are_listed_in_path_order_not_in_the_order_written():
    written = {
        "StartAt": "A",
        "States": {
            "C": task("third"),
            "B": {**task("second", "C", "Arguments")},
            "A": {"Type": "Pass", "Next": "B"},
            "Direct": {"Type": "Task", "Resource": ARN.format("fourth"), "End": True},
        },
    }
    tasks = lambda_tasks(written)
    assert [(t.state, t.function, t.field) for t in tasks] == [
        ("B", "second", "Arguments"),
        ("C", "third", "Parameters"),
        ("Direct", "fourth", "Resource"),
    ]


def test_a_function_taken_from_the_input_is_refused():
    state = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName.$": "$.f"}}
    with pytest.raises(DefinitionError, match=r"FunctionName\.\$"):
        lambda_tasks({"StartAt": "T", "States": {"T": {**state, "End": True}}})


def test_a_file_that_is_not_a_definition_is_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("{")
    with pytest.raises(DefinitionError, match="not JSON"):
        load_definition(path)
    path.write_text(json.dumps({"StartAt": "X"}))
    with pytest.raises(DefinitionError, match="States"):
        load_definition(path)


@pytest.fixture
def three_files(tmp_path):
    for name in ("serialize", "classify", "filter"):
        (tmp_path / f"{name}.py").write_text("def lambda_handler(event, context):\n    return event\n")
    return [tmp_path / f"{n}.py" for n in ("serialize", "classify", "filter")]


def test_functions_map_by_name_then_by_order_then_by_map(three_files):
    handlers = read_sources(three_files)
    by_name = lambda_tasks(
        definition(A=task("serializeImageData", "B"), B=task("classifyImage", "C"), C=task("lastOne"))
    )
    mapped = map_functions(by_name, handlers, {})
    assert [(m.function, m.handler.file.name, m.reason) for m in mapped] == [
        ("serializeImageData", "serialize.py", "by name"),
        ("classifyImage", "classify.py", "by name"),
        ("lastOne", "filter.py", "by order"),  # matches no name: the handler left
    ]
    by_order = lambda_tasks(definition(A=task("fn-a", "B"), B=task("fn-b", "C"), C=task("fn-c")))
    assert [m.handler.file.name for m in map_functions(by_order, handlers, {})] == [p.name for p in three_files]
    settled = map_functions(by_order, handlers, {"fn-a": "filter.py", "fn-c": "serialize.py:lambda_handler"})
    assert [(m.handler.file.name, m.reason) for m in settled] == [
        ("filter.py", "--map"),
        ("classify.py", "by order"),
        ("serialize.py", "--map"),
    ]


def test_an_undecidable_mapping_names_the_map_option(three_files):
    handlers = read_sources(three_files[:2])
    tasks = lambda_tasks(definition(A=task("fn-a", "B"), B=task("fn-b", "C"), C=task("fn-c")))
    with pytest.raises(MappingError, match="--map fn-"):
        map_functions(tasks, handlers, {})
    with pytest.raises(MappingError, match="not a function of the definition"):
        map_functions(tasks, handlers, {"nope": "serialize.py"})


def test_the_rewritten_definition_calls_the_created_functions_and_the_original_is_kept():
    original = definition(A=task("one", "B"), B={"Type": "Task", "Resource": ARN.format("two"), "End": True})
    arns = {"one": "arn:new:one", "two": "arn:new:two"}
    result = rewritten(original, lambda_tasks(original), arns)
    assert result["States"]["A"]["Parameters"]["FunctionName"] == "arn:new:one"
    assert result["States"]["B"]["Resource"] == "arn:new:two"
    assert original["States"]["A"]["Parameters"]["FunctionName"] == ARN.format("one")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$", {"Payload": {"body": {"a": [1, 2]}}}),
        ("$.Payload.body", {"a": [1, 2]}),
        ("$.Payload.body.a[1]", 2),
        ("$['Payload']['body']", {"a": [1, 2]}),
        ("$.Payload.missing", MISSING),
        ("$.Payload.body.a[5]", MISSING),
        ("$.Payload.body.a.b", MISSING),
        ("$..a", NotImplemented),
        ("$.Payload[*]", NotImplemented),
    ],
)
def test_select_finds_values_misses_as_aws_does_and_skips_what_it_does_not_evaluate(path, value):
    assert (
        select(path, {"Payload": {"body": {"a": [1, 2]}}}) == value
        or select(path, {"Payload": {"body": {"a": [1, 2]}}}) is value
    )


def test_selections_that_select_nothing_are_the_states_runtime_failures_of_aws():
    state = {"InputPath": "$.body", "OutputPath": "$.Payload.body", "ResultSelector": {"x.$": "$.Payload.y"}}
    failures = check_selections("S", state, {"a": 1}, {"Payload": {"z": 1}}, {"Payload": {"z": 1}})
    assert [(f.field, f.path) for f in failures] == [
        ("InputPath", "$.body"),
        ("ResultSelector", "$.Payload.y"),
        ("OutputPath", "$.Payload.body"),
    ]
    assert "States.Runtime" in failures[2].explain() and "keys there: Payload" in failures[2].explain()
    assert failures[2].aws_message().endswith("No results for path: $['Payload']['body']")
    assert check_selections("S", {"OutputPath": "$.Payload"}, {}, {"Payload": {}}, {"Payload": {}}) == []


def test_result_path_places_the_result_into_the_input():
    assert apply_result_path({}, {"a": 1}, {"r": 2}) == {"r": 2}
    assert apply_result_path({"ResultPath": "$.out"}, {"a": 1}, {"r": 2}) == {"a": 1, "out": {"r": 2}}
    assert apply_result_path({"ResultPath": None}, {"a": 1}, {"r": 2}) == {"a": 1}
