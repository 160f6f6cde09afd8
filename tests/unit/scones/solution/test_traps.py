"""The traps of a course solution, found in its sources and definition, and in the errors an execution reports."""

from __future__ import annotations

import textwrap

import pytest

from scones.solution.definition import lambda_tasks, map_functions
from scones.solution.sources import read_sources
from scones.solution.traps import (
    ACCEPT,
    BODY_STRING,
    BYTES_RESULT,
    MISSING_PATH,
    RUNTIME_ENDPOINT,
    SAGEMAKER_SDK,
    SWALLOWED,
    check_definition,
    check_sources,
    endpoint_names,
    explain_failure,
    explain_output,
)

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


def solution(tmp_path, code: str, output_path: str = "$.Payload"):
    file = tmp_path / "lambda.py"
    file.write_text(textwrap.dedent(code))
    names = [h.function for h in read_sources([file])]
    states = {}
    for i, name in enumerate(names):
        states[name] = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": ARN.format(name), "Payload.$": "$"},
            "OutputPath": output_path,
            **({"Next": names[i + 1]} if i + 1 < len(names) else {"End": True}),
        }
    definition = {"StartAt": names[0], "States": states}
    tasks = lambda_tasks(definition)
    mapped = map_functions(tasks, read_sources([file]), {})
    return [t.kind for t in check_sources(mapped) + check_definition(definition, tasks, mapped)], mapped


@pytest.mark.parametrize(
    ("code", "kinds"),
    [
        (
            """
            import base64
            def serialize(event, context):
                return {"image_data": base64.b64encode(b"x")}
            """,
            [BYTES_RESULT],
        ),
        (
            """
            import base64
            def serialize(event, context):
                data = base64.b64encode(b"x")
                return {"image_data": data.decode()}
            def other(event, context):
                return {"image_data": str(base64.b64encode(b"x"), "utf-8")}
            """,
            [],
        ),
        (
            """
            import json
            def serialize(event, context):
                return {"statusCode": 200, "body": json.dumps(event)}
            def filter(event, context):
                return max(event["body"]["inferences"])
            """,
            [BODY_STRING],
        ),
        (
            """
            def classify(event, context):
                try:
                    return {"statusCode": 200, "body": event}
                except Exception as e:
                    return {"statusCode": 500, "body": str(e)}
            """,
            [SWALLOWED],
        ),
        (
            """
            import boto3
            ACCEPT = "image/png"
            def classify(event, context):
                boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="e", Body=b"", Accept=ACCEPT)
                return {"body": event}
            """,
            [ACCEPT],
        ),
        (
            """
            import os, boto3
            runtime = boto3.client("runtime.sagemaker", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
            def classify(event, context):
                return {"body": event}
            """,
            [RUNTIME_ENDPOINT],
        ),
        (
            """
            from sagemaker.predictor import Predictor
            def classify(event, context):
                return {"body": event}
            """,
            [SAGEMAKER_SDK],
        ),
    ],
)
def test_each_trap_is_found_in_the_sources_and_correct_code_is_not_flagged(tmp_path, code, kinds):
    found, _ = solution(tmp_path, code)
    assert found == kinds


def test_a_payload_body_path_on_results_without_body_is_found_before_the_run(tmp_path):
    code = """
    def serialize(event, context):
        return {"image_data": "", "s3_key": event["s3_key"]}
    """
    assert solution(tmp_path, code, "$.Payload.body")[0] == [MISSING_PATH]
    assert solution(tmp_path, code, "$.Payload")[0] == []
    spread = """
    def serialize(event, context):
        return {**event, "image_data": ""}
    """
    assert solution(tmp_path, spread, "$.Payload.body")[0] == []  # `event` may hold a body: not known here


def test_endpoint_names_are_read_from_literals_and_module_constants(tmp_path):
    code = """
    import boto3
    ENDPOINT = "image-classification-2025"
    def classify(event, context):
        boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName=ENDPOINT, Body=b"")
        return {"body": event}
    """
    _, mapped = solution(tmp_path, code)
    assert endpoint_names(mapped) == [("lambda.py:classify", "image-classification-2025")]


@pytest.mark.parametrize(
    ("error", "cause", "kind"),
    [
        (
            "Runtime.MarshalError",
            "Unable to marshal response: Object of type bytes is not JSON serializable",
            BYTES_RESULT,
        ),
        ("Runtime.HandlerError", '{"errorMessage": "Object of type bytes is not JSON serializable"}', BYTES_RESULT),
        ("TypeError", '{"errorMessage": "string indices must be integers, not \'str\'"}', BODY_STRING),
        ("AttributeError", "'NoneType' object has no attribute 'get'", SWALLOWED),
        ("Exception", "An error occurred (406) when calling the InvokeEndpoint operation", ACCEPT),
        ("ClientError", "An error occurred (400) when calling the InvokeEndpoint operation: ", RUNTIME_ENDPOINT),
        (
            "InternalFailure",
            "An error occurred (InternalFailure) when calling the InvokeEndpoint operation: The API for service "
            "sagemaker-runtime is either not included in your current license plan or has not yet been emulated",
            RUNTIME_ENDPOINT,
        ),
        ("States.Runtime", "Invalid path '$.Payload.body' : No results for path: $['Payload.body']", MISSING_PATH),
    ],
)
def test_failures_are_explained_by_their_trap(error, cause, kind):
    assert any(f"[{kind}" in line for line in explain_failure(error, cause))


def test_an_unknown_failure_gets_no_made_up_explanation():
    assert explain_failure("ValueError", "THRESHOLD_CONFIDENCE_NOT_MET") == []
    assert explain_failure("States.Runtime", "The JSONata expression failed") == []


def test_an_error_status_in_a_successful_result_is_explained():
    assert explain_output({"Payload": {"statusCode": 500, "body": "x"}, "StatusCode": 200})
    assert explain_output({"statusCode": 200}) == []


def test_the_error_inside_an_error_result_is_explained_too():
    result = {
        "Payload": {"statusCode": 500, "body": '{"error": "An error occurred (ModelError) ... (406) from primary"}'}
    }
    explained = explain_output(result)
    assert explained[0].startswith(f"[{SWALLOWED}]") and any(f"[{ACCEPT}]" in line for line in explained)
