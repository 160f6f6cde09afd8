"""The upload trigger (S3 -> EventBridge rule -> state machine) on a real emulator: an upload alone, with
no StartExecution, starts exactly one execution on the contract's input, and an object written under the
data-capture prefix starts none. Both ministack and LocalStack deliver it (cloud/EMULATORS.md)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import boto3
import pytest

from scones.pipeline.deployment import CAPTURE_PREFIX
from scones.workflow.execution import (
    TRIGGER_TIMEOUT_S,
    TriggeredExecutions,
    image_key,
    wait_for_execution,
)

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0
QUIET_S = 3.0  # how long an upload that must start nothing is watched (both emulators deliver in ~0.1 s)


def executions_on(sfn, machine: str, bucket: str, key: str) -> list[dict]:
    """Every execution of `machine` whose input names s3://bucket/key, described."""
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            try:
                event = json.loads(described.get("input") or "null")
            except RecursionError:  # another test's input nested 10,000 deep (test_hostile_inputs.py)
                continue
            if isinstance(event, dict) and (event.get("s3_bucket"), event.get("s3_key")) == (bucket, key):
                found.append(described)
    return found


def test_the_stack_has_the_trigger_on_the_image_prefix(stack):
    assert stack["UploadTriggerPrefix"] == "images/"
    rule = boto3.client("events").describe_rule(Name=stack["UploadTriggerRuleName"])
    assert rule["State"] == "ENABLED"
    pattern = json.loads(rule["EventPattern"])
    assert pattern["detail"]["object"]["key"] == [{"prefix": "images/"}]


def test_an_upload_alone_starts_one_execution_that_routes_the_image(stack, s3, sfn, test_images):
    chosen = test_images.confident["bicycle"]
    body = chosen.path.read_bytes()
    bucket, machine = stack["ImageBucketName"], stack["StateMachineArn"]
    key = image_key(body, stack["UploadTriggerPrefix"]).replace(".png", f"-{uuid.uuid4().hex[:8]}.png")
    since = datetime.now(UTC)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/png")  # and nothing else
    arn = TriggeredExecutions(sfn, machine).wait_for(bucket, key, since, TRIGGER_TIMEOUT_S)
    result = wait_for_execution(sfn, arn, EXECUTION_TIMEOUT_S)
    assert result.status == "SUCCEEDED", result.summary()
    assert result.label == "bicycle"
    assert result.inferences == pytest.approx(chosen.scores, abs=1e-6)
    described = executions_on(sfn, machine, bucket, key)
    assert [d["executionArn"] for d in described] == [arn]  # exactly one
    event = json.loads(described[0]["input"])
    assert {k: event[k] for k in ("s3_bucket", "s3_key")} == {"s3_bucket": bucket, "s3_key": key}
    assert set(event) == {"s3_bucket", "s3_key", "id"}  # the EventBridge event's id rides along


@pytest.mark.parametrize("prefix", [f"{CAPTURE_PREFIX}/", "direct/", "imagesx/"])
def test_an_object_outside_the_image_prefix_starts_nothing(stack, s3, sfn, test_images, prefix):
    bucket, machine = stack["ImageBucketName"], stack["StateMachineArn"]
    key = f"{prefix}{uuid.uuid4().hex}.png"
    s3.put_object(Bucket=bucket, Key=key, Body=test_images.confident["bicycle"].path.read_bytes())
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        assert executions_on(sfn, machine, bucket, key) == []
        time.sleep(0.5)
