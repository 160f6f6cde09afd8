"""An execution's path read from its history: states with input, output and task result, the selections AWS
would fail on, and the text with image_data elided."""

from __future__ import annotations

import json

from scones.solution.trace import elided, format_trace, read_trace

DEFINITION = {
    "StartAt": "Serialize",
    "States": {
        "Serialize": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "OutputPath": "$.Payload.body",
            "Next": "Classify",
        },
        "Classify": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "OutputPath": "$.Payload",
            "End": True,
        },
    },
}


def event(kind, **details):
    key = {"TaskSucceeded": "taskSucceededEventDetails", "TaskFailed": "taskFailedEventDetails"}.get(kind)
    if key is None:
        key = "stateEnteredEventDetails" if kind.endswith("Entered") else "executionFailedEventDetails"
        key = "stateExitedEventDetails" if kind.endswith("Exited") else key
    return {"type": kind, key: details}


def history(serialize_result, classify_error=None):
    events = [
        event("TaskStateEntered", name="Serialize", input=json.dumps({"s3_key": "k", "image_data": ""})),
        event("TaskSucceeded", output=json.dumps(serialize_result)),
        event("TaskStateExited", name="Serialize", output="null"),
        event("TaskStateEntered", name="Classify", input="null"),
    ]
    if classify_error:
        events.append(event("TaskFailed", error=classify_error[0], cause=classify_error[1]))
    return events


def test_a_missing_output_path_is_the_failure_aws_would_report_where_the_emulator_passed_null():
    result = {"Payload": {"image_data": "A" * 5000, "s3_key": "k"}, "StatusCode": 200}
    cause = json.dumps({"errorMessage": "'NoneType' object is not subscriptable", "errorType": "TypeError"})
    trace = read_trace("arn:x:exec", "FAILED", "TypeError", cause, history(result, ("TypeError", cause)), DEFINITION)
    assert [s.name for s in trace.steps] == ["Serialize", "Classify"]
    assert trace.aws_failure.state == "Serialize" and trace.aws_failure.path == "$.Payload.body"
    assert not trace.succeeded
    text = "\n".join(format_trace(trace, "photo.png"))
    assert "on AWS: FAILED at 'Serialize' with States.Runtime (OutputPath $.Payload.body)" in text
    assert "the emulator passed null on instead" in text
    assert "error   TypeError: 'NoneType' object is not subscriptable" in text
    assert "A" * 300 not in text


def test_a_succeeded_execution_with_every_path_present_succeeds():
    result = {"Payload": {"body": {"s3_key": "k"}}, "StatusCode": 200}
    trace = read_trace("arn:x:exec", "SUCCEEDED", None, None, history(result)[:3], DEFINITION)
    assert trace.succeeded and trace.aws_failure is None


def test_image_data_is_elided_also_inside_a_json_string_body():
    value = {"statusCode": 200, "body": json.dumps({"image_data": "B" * 100, "s3_key": "k"})}
    shown = elided(value)
    assert json.loads(shown["body"]) == {"image_data": "<100 characters>", "s3_key": "k"}
    assert elided({"image_data": ""}) == {"image_data": ""}  # the course's empty input stays as it is
