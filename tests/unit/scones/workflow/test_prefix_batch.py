"""Unit tests of the batch over a prefix: the summary handler (moto S3), the batch state machine's
definition and template block, and the prefix parsing of scones/workflow/prefix_batch.py. No network."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from cfnlint.decode import decode_str
from conftest import use_offline_aws
from moto import mock_aws
from typer.testing import CliRunner

from cloud.artifacts import BATCH_STATE_MACHINE_PATH, STATE_MACHINE_PATH, TEMPLATE_PATH
from lambdas import clients, summarize_batch
from lambdas.contract import InvalidEventError
from scones import cli
from scones.errors import EXIT_USAGE
from scones.workflow.prefix_batch import InvalidPrefixError, is_prefix_argument, parse_prefix

TEMPLATE = decode_str(TEMPLATE_PATH.read_text())[0]
RESOURCES = TEMPLATE["Resources"]
BATCH = json.loads(BATCH_STATE_MACHINE_PATH.read_text())
SINGLE = json.loads(STATE_MACHINE_PATH.read_text())
MAP = BATCH["States"]["Classify Each Image"]
BUCKET = "scones-unit-batch"


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    use_offline_aws(monkeypatch, "us-east-1")
    clients.s3_client.cache_clear()
    yield
    clients.s3_client.cache_clear()


def routed(key, scores):
    return {"s3_key": key, "outcome": "routed", "inferences": scores}


def lambda_error(name, message, unnamed=False):
    """The Catch's Error and Cause as AWS (named) or ministack (Runtime.HandlerError) report them."""
    error = "Runtime.HandlerError" if unnamed else name
    cause = json.dumps({"errorMessage": f"{name}: {message}", "errorType": error})
    return {"error": error, "cause": cause}


# --- summary ---------------------------------------------------------------------------------


def test_summary_counts_each_outcome_per_class():
    results = [
        routed("p/b1.png", [0.99, 0.01]),
        routed("p/b2.png", [0.97, 0.03]),
        routed("p/m1.png", [0.02, 0.98]),
        {"s3_key": "p/unsure.png", "outcome": "rejected", "inferences": [0.4, 0.6]},
        {"s3_key": "p/notes.txt", "outcome": "failed", **lambda_error("NotAnImageError", "not a PNG")},
    ]
    summary = summarize_batch.summarize(results, BUCKET, "p/", 50)
    assert summary["classes"] == {
        "bicycle": {"routed": 2, "rejected": 0, "failed": 0},
        "motorcycle": {"routed": 1, "rejected": 1, "failed": 0},
    }
    assert summary["totals"] == {"items": 5, "routed": 3, "rejected": 1, "failed": 1}
    assert summary["unclassified_failed"] == 1
    assert summary["failed_items"] == [
        {"s3_key": "p/notes.txt", "error": "NotAnImageError", "message": "NotAnImageError: not a PNG"}
    ]
    assert summary["rejected_items"] == [{"s3_key": "p/unsure.png", "class": "motorcycle", "inferences": [0.4, 0.6]}]
    assert summary["failure_threshold_exceeded"] is False


def test_a_low_confidence_error_without_its_name_is_still_a_rejection():
    # ministack reports it as Runtime.HandlerError, so the Catch on LowConfidenceError never matches
    # and the item arrives through "Filter Failed", with its scores.
    item = {
        "s3_key": "p/u.png",
        "outcome": "failed",
        "inferences": [0.7, 0.3],
        **lambda_error("LowConfidenceError", "x", True),
    }
    summary = summarize_batch.summarize([item], BUCKET, "p/", 0)
    assert summary["classes"]["bicycle"] == {"routed": 0, "rejected": 1, "failed": 0}
    assert summary["totals"]["failed"] == 0


def test_an_unnamed_other_error_after_classification_is_a_failure_of_that_class():
    item = {
        "s3_key": "p/c.png",
        "outcome": "failed",
        "inferences": [0.1, 0.9],
        **lambda_error("ConfigurationError", "x", True),
    }
    summary = summarize_batch.summarize([item], BUCKET, "p/", 0)
    assert summary["classes"]["motorcycle"]["failed"] == 1
    assert summary["failed_items"][0]["error"] == "ConfigurationError"
    assert summary["failure_threshold_exceeded"] is True


def test_a_null_result_counts_as_failed_without_a_class():
    summary = summarize_batch.summarize([None, routed("p/b.png", [0.99, 0.01])], BUCKET, "p/", 50)
    assert summary["totals"] == {"items": 2, "routed": 1, "rejected": 0, "failed": 1}
    assert summary["unclassified_failed"] == 1
    assert summary["failure_threshold_exceeded"] is False  # 50% tolerated, 50% failed


@pytest.mark.parametrize(
    ("failed", "tolerated", "exceeded"), [(0, 0, False), (1, 10, False), (2, 10, True), (10, 100, False)]
)
def test_the_threshold_is_a_share_of_all_items(failed, tolerated, exceeded):
    results = [
        {"s3_key": f"k{i}", "outcome": "failed", "error": "States.TaskFailed", "cause": "x"} for i in range(failed)
    ]
    results += [routed(f"r{i}", [0.99, 0.01]) for i in range(10 - failed)]
    assert summarize_batch.summarize(results, BUCKET, "p/", tolerated)["failure_threshold_exceeded"] is exceeded


def test_an_empty_prefix_summarizes_to_zero():
    summary = summarize_batch.summarize([], BUCKET, "p/", 10)
    assert summary["totals"] == {"items": 0, "routed": 0, "rejected": 0, "failed": 0}
    assert summary["failure_threshold_exceeded"] is False


def test_handler_writes_the_summary_to_s3_and_returns_the_counts():
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        event = {
            "bucket": BUCKET,
            "prefix": "p/",
            "execution_name": "batch-1",
            "tolerated_failure_percentage": 10,
            "results": [routed("p/b.png", [0.99, 0.01])],
        }
        returned = summarize_batch.handler(event, None)
        written = json.loads(s3.get_object(Bucket=BUCKET, Key="batch-summaries/batch-1.json")["Body"].read())
    assert returned == {
        "summary_location": f"s3://{BUCKET}/batch-summaries/batch-1.json",
        "totals": written["totals"],
        "classes": written["classes"],
    }
    assert written["totals"]["routed"] == 1


def test_handler_writes_the_summary_before_failing_on_too_many_failures():
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        event = {"bucket": BUCKET, "prefix": "p/", "execution_name": "b2", "tolerated_failure_percentage": 0,
                 "results": [None]}  # fmt: skip
        with pytest.raises(summarize_batch.TooManyFailuresError, match=r"^TooManyFailuresError: 1 of 1 items failed"):
            summarize_batch.handler(event, None)
        written = json.loads(s3.get_object(Bucket=BUCKET, Key="batch-summaries/b2.json")["Body"].read())
    assert written["totals"]["failed"] == 1


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"bucket": BUCKET, "prefix": "p/", "execution_name": "e", "results": "not a list"},
        {"bucket": BUCKET, "prefix": "p/", "execution_name": "e", "results": [], "tolerated_failure_percentage": 101},
        {"bucket": BUCKET, "prefix": "p/", "execution_name": "e", "results": [], "tolerated_failure_percentage": "5"},
    ],
)
def test_handler_names_a_malformed_event(event):
    with pytest.raises(InvalidEventError, match="summarize_batch"):
        summarize_batch.handler(event, None)


# --- definition and template -----------------------------------------------------------------


def test_batch_placeholders_are_exactly_its_substitutions():
    text = BATCH_STATE_MACHINE_PATH.read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    assert text.count("${") == len(re.findall(r"\$\{\w+\}", text))  # no stray "${" for AWS to reject
    assert placeholders == set(RESOURCES["BatchStateMachine"]["Properties"]["DefinitionSubstitutions"])


def test_the_map_is_distributed_over_listobjectsv2_with_keys_not_bytes():
    assert MAP["Type"] == "Map"
    assert MAP["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert MAP["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert MAP["ItemSelector"] == {
        "s3_bucket.$": "$.bucket",
        "s3_key.$": "$$.Map.Item.Value.Key",
        "id.$": "$$.Execution.Name",  # the items' correlation id in the functions' logs (lambdas/logs.py)
    }
    assert "ItemBatcher" not in MAP  # neither emulator implements it
    assert "ToleratedFailurePercentagePath" in MAP or "ToleratedFailurePercentage" in MAP
    defaults = BATCH["States"]["Apply Defaults"]["Parameters"]["defaults"]
    assert 0 < defaults["tolerated_failure_percentage"] < 100


def test_items_run_the_single_image_tasks_unchanged():
    states = MAP["ItemProcessor"]["States"]
    for name in ("Serialize Image Data", "Classify Image", "Filter Low Confidence"):
        for key in ("Resource", "Parameters", "OutputPath", "Retry"):
            assert states[name][key] == SINGLE["States"][name][key], (name, key)


def test_item_outputs_never_carry_the_image():
    ends = {n: s for n, s in MAP["ItemProcessor"]["States"].items() if s.get("End")}
    assert set(ends) == {"Routed", "Rejected", "Filter Failed", "Item Failed"}
    for state in ends.values():
        assert state["Type"] == "Pass"
        assert "image_data" not in json.dumps(state["Parameters"])
        assert "s3_key.$" in state["Parameters"]
    catch = MAP["ItemProcessor"]["States"]["Filter Low Confidence"]["Catch"]
    assert catch[0] == {"ErrorEquals": ["LowConfidenceError"], "ResultPath": "$.error", "Next": "Rejected"}


def test_batch_role_is_scoped_to_its_bucket_functions_and_own_executions():
    statements = RESOURCES["BatchStateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_action = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    assert by_action['"s3:ListBucket"'] == {"Fn::GetAtt": ["ImageBucket", "Arn"]}
    start = by_action['"states:StartExecution"']["Fn::Sub"]
    assert start.endswith(":stateMachine:${AWS::StackName}-batch-classification")
    assert by_action['["states:DescribeExecution", "states:StopExecution"]']["Fn::Sub"].endswith(
        ":execution:${AWS::StackName}-batch-classification/*"
    )
    assert RESOURCES["BatchStateMachine"]["Properties"]["StateMachineName"] == {
        "Fn::Sub": "${AWS::StackName}-batch-classification"
    }
    summary_role = RESOURCES["SummarizeBatchRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert summary_role[0] == {
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": {"Fn::Sub": "${ImageBucket.Arn}/" + summarize_batch.SUMMARY_PREFIX + "*"},
    }
    assert TEMPLATE["Outputs"]["BatchStateMachineArn"] == {"Value": {"Ref": "BatchStateMachine"}}


# --- prefix argument ---------------------------------------------------------------------------


def test_prefix_arguments():
    assert is_prefix_argument("s3://b/images/") and not is_prefix_argument("s3://b/images/x.png")
    assert parse_prefix("s3://b/images/") == ("b", "images/")
    assert parse_prefix("s3://b", "images/") == ("b", "images/")


@pytest.mark.parametrize(
    ("argument", "prefix", "match"),
    [
        ("b/images/", None, "is not s3://"),
        ("s3:///images/", None, "names no bucket"),
        ("s3://b/", None, "give a prefix"),
        ("s3://b/batch-summaries/", None, "holds the batch summaries"),
        ("s3://b/images/", "other/", "give the prefix once"),
    ],
)
def test_bad_prefix_arguments_are_named(argument, prefix, match):
    with pytest.raises(InvalidPrefixError, match=match):
        parse_prefix(argument, prefix)


@pytest.mark.parametrize(
    ("argument", "match"), [("s3://bucket/", "give a prefix"), ("s3://bucket/batch-summaries/", "batch summaries")]
)
def test_classify_refuses_a_bad_prefix_before_connecting(argument, match, tmp_path):
    result = CliRunner().invoke(cli.app, ["classify", argument, "--workdir", str(tmp_path)], prog_name="scones")
    assert result.exit_code == EXIT_USAGE
    assert match in result.stderr
