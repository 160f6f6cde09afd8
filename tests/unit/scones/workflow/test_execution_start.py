"""What scones.workflow.execution.start_execution sends, and what it refuses before any call (botocore's Stubber)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from lambdas.contract import MAX_EVENT_BYTES, MAX_EVENT_DEPTH, InvalidEventError
from scones.workflow.execution import start_execution

ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:scones"  # a stub's, never called


@pytest.fixture
def sfn(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("stepfunctions", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def nested(depth: int) -> dict:
    event: dict = {"s3_bucket": "b", "s3_key": "k.png"}
    inner = event
    for _ in range(depth - 1):
        inner["x"] = {}
        inner = inner["x"]
    return event


def sent_parameters(client) -> list[dict]:
    sent = []
    client.meta.events.register("provide-client-params.states.StartExecution", lambda params, **_: sent.append(params))
    return sent


def test_an_input_is_sent_as_json_under_a_fresh_name_with_it_as_the_correlation_id(sfn):
    client, stubber = sfn
    event = nested(MAX_EVENT_DEPTH)  # at the limit: allowed
    sent = sent_parameters(client)
    for _ in range(2):
        stubber.add_response(
            "start_execution",
            {"executionArn": f"{ARN}:run-1", "startDate": "2026-01-01T00:00:00Z"},
            {"stateMachineArn": ARN, "name": ANY, "input": ANY},
        )
    assert start_execution(client, ARN, event) == f"{ARN}:run-1"
    start_execution(client, ARN, {**event, "id": "the-callers-own"})
    first, second = sent
    assert json.loads(first["input"]) == {**event, "id": first["name"]}  # lambdas/logs.py reads `id`
    assert first["name"].startswith("run-") and len(first["name"]) <= 80
    assert json.loads(second["input"])["id"] == "the-callers-own"  # a caller's id is kept


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH + 1, 2_000, 50_000])
def test_an_input_nested_past_the_limit_is_refused_before_start_execution(sfn, depth):
    client, _ = sfn  # no response stubbed: any call would fail the test
    with pytest.raises(InvalidEventError, match=f"more than the workflow's limit of {MAX_EVENT_DEPTH}"):
        start_execution(client, ARN, nested(depth))


def test_an_input_over_the_size_limit_is_refused_before_start_execution(sfn):
    client, _ = sfn
    event = {"s3_bucket": "b", "s3_key": "k.png", "image_data": "A" * MAX_EVENT_BYTES}
    with pytest.raises(InvalidEventError, match="upload the image to the bucket"):
        start_execution(client, ARN, event)
