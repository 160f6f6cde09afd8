"""Metrics, logs and alarms on the real emulator after real executions. Neither ministack nor LocalStack
turns embedded-metric-format lines into CloudWatch metrics (cloud/EMULATORS.md), so the strongest check
both allow is that the EMF documents arrive in the functions' log groups, valid, carrying the execution's
correlation id, beside JSON log lines with the same id; and that the alarms exist as the template says.
The dashboard is created by ministack's CloudFormation; LocalStack's leaves it as a placeholder. Every log line
names the Python that ran the handler, so the same logs show that each function runs on the Python its
template Runtime declares."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

from cloud.artifacts import TEMPLATE_PATH
from cloud.aws import AwsTarget
from cloud.template import read_template
from scones.local.emulator import is_ministack
from scones.workflow.execution import run_image
from tests.helpers.emf_spec import check_emf

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0
LOG_DEADLINE_S = 30.0


def stack_name(stack: dict) -> str:
    return stack["StateMachineArn"].rsplit(":", 1)[-1].removesuffix("-image-classification")


def log_lines(stack: dict, function: str, correlation: str) -> list[dict]:
    """The JSON lines of `function`'s log group that carry `correlation`, once they have arrived."""
    group = f"/aws/lambda/{stack_name(stack)}"
    logs = boto3.client("logs")
    name = next(
        g["logGroupName"]
        for g in logs.describe_log_groups()["logGroups"]
        if g["logGroupName"].startswith(group) and g["logGroupName"].endswith(function)
    )
    deadline = time.monotonic() + LOG_DEADLINE_S
    while True:
        found = []
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=name):
            for event in page["events"]:
                message = event["message"].strip()
                if message.startswith("{") and correlation in message:
                    found.append(json.loads(message))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def correlation_of(result) -> str:
    described = boto3.client("stepfunctions").describe_execution(executionArn=result.execution_arn)
    return json.loads(described["input"])["id"]


@pytest.fixture(scope="module")
def executions(stack, test_images):
    routed = run_image(
        test_images.confident["bicycle"].path.read_bytes(), stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S
    )
    rejected = run_image(test_images.unsure.path.read_bytes(), stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
    assert routed.status == "SUCCEEDED" and rejected.error_name == "LowConfidenceError"
    return routed, rejected


def test_the_functions_write_emf_metrics_with_the_executions_correlation_id(stack, executions):
    routed, rejected = executions
    for result, low_confidence in ((routed, 0), (rejected, 1)):
        correlation = correlation_of(result)
        documents = [line for line in log_lines(stack, "filter-low-confidence", correlation) if "_aws" in line]
        assert len(documents) == 1, documents
        check_emf(documents[0])
        assert documents[0]["LowConfidence"] == low_confidence
        assert documents[0]["Stack"] == stack["StateMachineArn"].rsplit(":", 1)[-1].removesuffix(
            "-image-classification"
        )
        classified = [line for line in log_lines(stack, "classify-image", correlation) if "_aws" in line]
        assert len(classified) == 1 and classified[0]["Inferences"] == 1
        assert classified[0]["Confidence"] == pytest.approx(max(result.inferences), abs=1e-6)


def test_the_log_lines_of_all_three_functions_carry_the_correlation_id(stack, executions):
    correlation = correlation_of(executions[0])
    for function in ("serialize-image-data", "classify-image", "filter-low-confidence"):
        lines = [line for line in log_lines(stack, function, correlation) if "message" in line]
        assert lines, function
        assert all(line["correlation_id"] == correlation and line["level"] == "INFO" for line in lines)


def test_the_alarms_exist_on_the_emulator_as_the_template_says(stack):
    cloudwatch = boto3.client("cloudwatch")
    names = [stack["LowConfidenceAlarmName"], stack["FailedExecutionsAlarmName"]]
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    assert set(alarms) == set(names)
    rate = alarms[stack["LowConfidenceAlarmName"]]
    assert (rate["MetricName"], rate["Statistic"], rate["Namespace"]) == (
        "LowConfidence",
        "Average",
        stack["MetricsNamespace"],
    )
    assert rate["Threshold"] == pytest.approx(0.3)
    failed = alarms[stack["FailedExecutionsAlarmName"]]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert failed["Dimensions"] == [{"Name": "StateMachineArn", "Value": stack["StateMachineArn"]}]


def test_the_dashboard_exists_where_the_emulator_creates_it(stack, aws_endpoint):
    if not is_ministack(aws_endpoint):
        # LocalStack 2026.3's CloudFormation does not create AWS::CloudWatch::Dashboard (cloud/EMULATORS.md).
        assert stack["DashboardName"] == "unknown"
        return
    body = json.loads(boto3.client("cloudwatch").get_dashboard(DashboardName=stack["DashboardName"])["DashboardBody"])
    named = {row[1] for widget in body["widgets"] for row in widget["properties"]["metrics"]}
    assert {"Inferences", "Confidence", "LowConfidence", "ExecutionsFailed"} <= named


def declared_runtimes() -> dict[str, str]:
    """The template's Runtime of each function, by the suffix of its FunctionName (e.g. "classify-image")."""
    resources = read_template(TEMPLATE_PATH)["Resources"]
    return {
        resource["Properties"]["FunctionName"]["Fn::Sub"].removeprefix("${AWS::StackName}-"): resource["Properties"][
            "Runtime"
        ]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def test_every_function_runs_on_the_python_its_template_runtime_declares(stack, executions):
    declared = declared_runtimes()
    assert set(declared) == {"serialize-image-data", "classify-image", "filter-low-confidence", "summarize-batch"}
    name = stack_name(stack)
    # The batch summary is not part of a single execution: invoke it alone, with an empty batch.
    correlation = f"runtime-{uuid.uuid4().hex[:8]}"
    summarized = boto3.client("lambda").invoke(
        FunctionName=f"{name}-summarize-batch",
        Payload=json.dumps(
            {
                "id": correlation,
                "bucket": stack["ImageBucketName"],
                "prefix": "images/",
                "execution_name": correlation,
                "results": [],
            }
        ).encode(),
    )
    assert "FunctionError" not in summarized, summarized["Payload"].read()
    correlations = {"summarize-batch": correlation}
    lambda_client = boto3.client("lambda")
    for function, runtime in declared.items():
        deployed = lambda_client.get_function_configuration(FunctionName=f"{name}-{function}")["Runtime"]
        lines = log_lines(stack, function, correlations.get(function) or correlation_of(executions[0]))
        ran_on = {line.get("runtime") for line in lines if "message" in line}
        assert (deployed, ran_on) == (runtime, {runtime}), function
