"""How a client finds the execution its upload started (scones.workflow.execution.TriggeredExecutions), against
botocore's Stubber: the match is on the input's bucket and key, executions older than the upload are
ignored, each execution is claimed once, and a trigger that never fires is TriggerNotFiredError."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from scones.workflow.execution import TriggeredExecutions, TriggerNotFiredError

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def execution(name: str, started: datetime) -> dict:
    return {
        "executionArn": f"{MACHINE.replace('stateMachine', 'execution')}:{name}",
        "stateMachineArn": MACHINE,
        "name": name,
        "status": "RUNNING",
        "startDate": started,
    }


def described(e: dict, key: str) -> dict:
    body = {"s3_bucket": "b", "s3_key": key, "id": e["name"]}
    return {
        **{k: e[k] for k in ("executionArn", "stateMachineArn", "name", "status", "startDate")},
        "input": json.dumps(body),
    }


@pytest.fixture
def sfn():
    return boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_the_upload_s_execution_is_found_by_key_and_claimed_once(sfn):
    old = execution("old", NOW - timedelta(minutes=5))
    other = execution("other", NOW + timedelta(seconds=1))
    first = execution("first", NOW + timedelta(seconds=1))
    second = execution("second", NOW + timedelta(seconds=2))
    with Stubber(sfn) as stub:
        stub.add_response("list_executions", {"executions": [second, first, other, old]}, {"stateMachineArn": MACHINE})
        for e, key in ((second, "images/a.png"), (first, "images/a.png"), (other, "images/z.png")):
            stub.add_response("describe_execution", described(e, key), {"executionArn": e["executionArn"]})
        finder = TriggeredExecutions(sfn, MACHINE, refresh_s=60)
        assert finder.wait_for("b", "images/a.png", NOW, timeout_s=0) == first["executionArn"]  # earliest first
        assert finder.claim("b", "images/a.png", NOW) == second["executionArn"]
        assert finder.claim("b", "images/a.png", NOW) is None  # both claimed; `old` predates the upload
        assert finder.claim("b", "images/z.png", NOW + timedelta(minutes=1)) is None  # started before `since`
        stub.assert_no_pending_responses()


def test_no_execution_on_the_key_is_trigger_not_fired_error(sfn):
    with Stubber(sfn) as stub:
        stub.add_response("list_executions", {"executions": []}, {"stateMachineArn": MACHINE})
        with pytest.raises(TriggerNotFiredError, match="--start-execution"):
            TriggeredExecutions(sfn, MACHINE, refresh_s=60).wait_for("b", "images/a.png", NOW, timeout_s=0)
