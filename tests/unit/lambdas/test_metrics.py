"""The functions' metrics (CloudWatch embedded metric format) and structured logs, and the template's alarms
and dashboard on them."""

from __future__ import annotations

import io
import json
import logging
import re
from contextlib import redirect_stdout, suppress
from types import SimpleNamespace

import pytest

from cloud.artifacts import TEMPLATE_PATH
from cloud.template import read_template
from lambdas import classify_image, filter_low_confidence, logs, metrics
from lambdas.contract import LowConfidenceError
from tests.helpers.emf_spec import check_emf


def emitted(function, *args) -> list[dict]:
    out = io.StringIO()
    with redirect_stdout(out), suppress(LowConfidenceError):
        function(*args)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith('{"_aws"')]


def test_a_document_follows_the_specification(monkeypatch):
    monkeypatch.setenv(metrics.NAMESPACE_VAR, "Test/Namespace")
    document = metrics.metric_document({"Inferences": (1, "Count")}, {"Stack": "s", "Class": "bicycle"})
    check_emf(document)
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Test/Namespace"
    assert directive["Dimensions"] == [["Stack"], ["Stack", "Class"]]  # the alarms' set and the per-class one


@pytest.mark.parametrize(
    ("values", "dimensions", "says"),
    [
        ({}, {"Stack": "s"}, "1 to 100 metrics"),
        ({f"m{i}": (1, "Count") for i in range(101)}, {"Stack": "s"}, "1 to 100 metrics"),
        ({"m": (1, "Count")}, {f"d{i}": "v" for i in range(31)}, "1 to 30 dimensions"),
        ({"m": (1, "Furlongs")}, {"Stack": "s"}, "unit 'Furlongs'"),
        ({"m": (float("nan"), "None")}, {"Stack": "s"}, "not a number"),
        ({"m": (True, "Count")}, {"Stack": "s"}, "not a number"),
    ],
)
def test_what_cloudwatch_would_reject_is_refused(values, dimensions, says):
    with pytest.raises(metrics.MetricsError, match=says):
        metrics.metric_document(values, dimensions)


@pytest.fixture
def stack_env(monkeypatch):
    monkeypatch.setenv(metrics.STACK_VAR, "scones-test")
    monkeypatch.setenv("CONFIDENCE_THRESHOLD", "0.9")


def event(inferences) -> dict:
    return {
        "s3_bucket": "scones-bucket",
        "s3_key": "a.png",
        "image_data": "aGk=",
        "inferences": inferences,
        "id": "c-1",
    }


def test_the_filter_counts_routed_and_rejected_images_so_the_average_is_the_rejected_share(stack_env):
    (routed,) = emitted(filter_low_confidence.handler, event([0.95, 0.05]), None)
    (rejected,) = emitted(filter_low_confidence.handler, event([0.3, 0.7]), None)
    for document in (routed, rejected):
        check_emf(document)
        assert document["Stack"] == "scones-test" and document["correlation_id"] == "c-1"
    assert (routed["LowConfidence"], routed["Routed"], routed["Class"]) == (0, 1, "bicycle")
    assert (rejected["LowConfidence"], rejected["Routed"], rejected["Class"]) == (1, 0, "motorcycle")


def test_the_classifier_counts_each_inference_with_its_class_and_confidence(stack_env, monkeypatch):
    monkeypatch.setattr(classify_image, "read_classify_settings", lambda: SimpleNamespace(endpoint_name="e"))
    monkeypatch.setattr(classify_image, "sagemaker_runtime_client_within", lambda remaining: None)
    monkeypatch.setattr(classify_image, "invoke_endpoint", lambda runtime, name, image: [0.2, 0.8])
    png = "iVBORw0KGgo="  # a PNG signature: what the classifier checks before calling
    (document,) = emitted(classify_image.handler, {**event([]), "image_data": png}, None)
    check_emf(document)
    assert (document["Inferences"], document["Confidence"], document["Class"]) == (1, 0.8, "motorcycle")


def test_log_lines_are_json_with_the_correlation_id(capsys):
    logger = logs.handler_logger("lambdas.test_logs")
    logs.bind_correlation_id({"id": "upload-event-42"}, None)
    logger.info("hello %s", "there")
    logs.bind_correlation_id({}, SimpleNamespace(aws_request_id="request-7"))  # no id: the Lambda request id
    logger.warning("second")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["message"], line["correlation_id"], line["level"]) for line in lines] == [
        ("hello there", "upload-event-42", "INFO"),
        ("second", "request-7", "WARNING"),
    ]
    assert all(
        re.match(r"^\d{4}-\d\d-\d\dT", line["timestamp"]) and line["logger"] == "lambdas.test_logs" for line in lines
    )
    assert logger.propagate is False and logging.getLogger("lambdas.test_logs").handlers


TEMPLATE = read_template(TEMPLATE_PATH)
RESOURCES = TEMPLATE["Resources"]


def test_the_low_confidence_alarm_watches_the_rejected_share():
    alarm = RESOURCES["LowConfidenceRateAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Statistic"]) == ("LowConfidence", "Average")
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert alarm["Dimensions"] == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}]
    assert alarm["Threshold"] == {"Ref": "LowConfidenceAlarmRate"}
    assert alarm["TreatMissingData"] == "notBreaching"


def test_the_failed_executions_alarm_watches_the_state_machine():
    alarm = RESOURCES["FailedExecutionsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "StateMachine"}}]


def test_the_dashboard_body_is_json_naming_the_metrics_the_functions_write():
    body, substitutions = RESOURCES["MonitoringDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    values = {
        "AWS::Region": "eu-west-1",
        "AWS::StackName": "scones",
        "StateMachine": "arn:sm",
        "Namespace": "NS",
        "Rate": "0.3",
    }
    assert set(substitutions) | {"AWS::Region", "AWS::StackName", "StateMachine"} == set(values)
    rendered = json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], body))
    named = {row[1] for widget in rendered["widgets"] for row in widget["properties"]["metrics"]}
    assert {"Inferences", "Confidence", "LowConfidence", "ExecutionsFailed", "ExecutionsSucceeded"} == named
