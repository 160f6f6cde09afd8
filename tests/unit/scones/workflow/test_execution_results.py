"""Reading an execution of the deployed workflow (scones/workflow/execution.py): its error name as AWS, LocalStack and
ministack report it, its label, and waiting for it with a deadline (botocore Stubber). No network."""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber
from conftest import use_offline_aws

from scones.workflow import execution as workflow


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    use_offline_aws(monkeypatch, "eu-west-1")


NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


# --- Reading executions ------------------------------------------------------------------------


def result(error=None, cause=None, status="FAILED", output=None) -> workflow.ExecutionResult:
    return workflow.ExecutionResult("arn", status, output, error, cause, NOW, NOW + datetime.timedelta(seconds=2))


def test_error_name_as_aws_and_localstack_report_it():
    cause = json.dumps({"errorType": "LowConfidenceError", "errorMessage": "LowConfidenceError: top 0.6"})
    r = result("LowConfidenceError", cause)
    assert (r.error_name, r.error_message, r.seconds) == ("LowConfidenceError", "LowConfidenceError: top 0.6", 2.0)


def test_error_name_when_the_emulator_reports_runtime_handler_error():
    cause = json.dumps({"errorType": "Runtime.HandlerError", "errorMessage": "ImageTooLargeError: too big"})
    assert result("Runtime.HandlerError", cause).error_name == "ImageTooLargeError"
    unnamed = json.dumps({"errorType": "Runtime.HandlerError", "errorMessage": "division by zero"})
    assert result("Runtime.HandlerError", unnamed).error_name == "Runtime.HandlerError"
    assert result("States.Timeout", "not json").error_message == "not json"


def test_label_of_a_succeeded_execution():
    output = {"s3_bucket": "b", "s3_key": "k", "image_data": "AAAA", "inferences": [0.02, 0.98]}
    r = result(status="SUCCEEDED", output=output)
    assert r.label == "motorcycle"
    assert "image_data" not in r.summary()["output"]
    assert result().label is None


def test_waiting_past_the_deadline_stops_the_execution():
    sfn = boto3.client("stepfunctions")
    running = {"executionArn": "arn:x", "stateMachineArn": "arn:sm", "status": "RUNNING", "startDate": NOW}
    with Stubber(sfn) as stub:
        stub.add_response("describe_execution", running)
        stub.add_response("stop_execution", {"stopDate": NOW}, {"executionArn": "arn:x", "error": ANY, "cause": ANY})
        with pytest.raises(workflow.ExecutionTimeoutError, match="stopped it"):
            workflow.wait_for_execution(sfn, "arn:x", timeout_s=0.05, poll_s=0.1)
        stub.assert_no_pending_responses()


def test_waiting_returns_the_terminal_state():
    sfn = boto3.client("stepfunctions")
    running = {"executionArn": "arn:x", "stateMachineArn": "arn:sm", "status": "RUNNING", "startDate": NOW}
    done = {**running, "status": "SUCCEEDED", "stopDate": NOW, "output": '{"inferences": [0.99, 0.01]}'}
    with Stubber(sfn) as stub:
        stub.add_response("describe_execution", running)
        stub.add_response("describe_execution", done)
        assert workflow.wait_for_execution(sfn, "arn:x", timeout_s=10, poll_s=0.01).label == "bicycle"
