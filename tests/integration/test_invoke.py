"""`scones invoke FUNCTION --event FILE` on the deployed functions with the example events of tests/events/, as
they are: the result or the named error, and the log lines of that invocation."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from cloud.artifacts import ROOT
from scones import cli
from scones.errors import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE

pytestmark = pytest.mark.integration

EVENTS = ROOT / "tests" / "events"


def invoke(stack: dict, deploy_config, *args: str):
    result = CliRunner().invoke(cli.app, ["invoke", *args, "--stack-name", deploy_config.stack_name, "--json"])
    record = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, record


def handler_lines(record: dict, function: str) -> list[dict]:
    """The invocation's JSON log lines (lambdas/logs.py) written by `function`."""
    lines = []
    for line in record["log_lines"]:
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue  # the platform's own lines (START, END, REPORT on AWS)
        if isinstance(parsed, dict) and parsed.get("function", "").endswith(function):
            lines.append(parsed)
    return lines


def test_classify_image_scores_the_example_image(stack, deploy_config):
    event = json.loads((EVENTS / "classify_image.json").read_text())
    result, record = invoke(stack, deploy_config, "classify_image", "--event", str(EVENTS / "classify_image.json"))
    assert result.exit_code == EXIT_OK, result.output
    assert record["error"] is None
    scores = record["result"]["inferences"]
    assert len(scores) == 2 and sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert record["result"]["s3_key"] == event["s3_key"]
    assert handler_lines(record, "classify-image"), record["log_lines"]


def test_filter_low_confidence_passes_a_confident_event_and_names_the_rejection(stack, deploy_config):
    confident = json.loads((EVENTS / "filter_low_confidence.json").read_text())
    result, record = invoke(
        stack, deploy_config, "filter-low-confidence", "--event", str(EVENTS / "filter_low_confidence.json")
    )
    assert result.exit_code == EXIT_OK, result.output
    assert record["result"] == confident
    assert any("is a bicycle" in line["message"] for line in handler_lines(record, "filter-low-confidence"))

    result, record = invoke(
        stack, deploy_config, "filter_low_confidence", "--event", str(EVENTS / "low_confidence.json")
    )
    assert result.exit_code == EXIT_REJECTED, result.output
    assert record["error"] == "LowConfidenceError"
    assert "below the threshold" in record["error_message"]
    assert "error: LowConfidenceError: top score 0.6125" in result.stderr


def test_serialize_image_data_reads_the_example_image_or_names_the_missing_bucket(stack, deploy_config, s3):
    event = json.loads((EVENTS / "serialize_image_data.json").read_text())
    path = str(EVENTS / "serialize_image_data.json")
    result, record = invoke(stack, deploy_config, "serialize_image_data", "--event", path)
    assert result.exit_code == EXIT_FAILED, result.output
    assert record["error"] == "BucketNotFoundError"
    assert "error: BucketNotFoundError" in result.stderr

    # The bucket the example names, holding the image the classifier's example carries.
    image = base64.b64decode(json.loads((EVENTS / "classify_image.json").read_text())["image_data"])
    s3.create_bucket(Bucket=event["s3_bucket"])
    try:
        s3.put_object(Bucket=event["s3_bucket"], Key=event["s3_key"], Body=image)
        result, record = invoke(stack, deploy_config, "serialize-image-data", "--event", path)
        assert result.exit_code == EXIT_OK, result.output
        assert base64.b64decode(record["result"]["image_data"]) == image
        assert record["result"]["inferences"] == []
    finally:
        s3.delete_object(Bucket=event["s3_bucket"], Key=event["s3_key"])
        s3.delete_bucket(Bucket=event["s3_bucket"])


def test_the_text_output_shows_result_and_log_lines(stack, deploy_config):
    args = ["invoke", "classify-image", "--event", str(EVENTS / "classify_image.json")]
    result = CliRunner().invoke(cli.app, [*args, "--stack-name", deploy_config.stack_name])
    assert result.exit_code == EXIT_OK, result.output
    assert "classify-image returned in" in result.stdout
    assert '"inferences": [' in result.stdout
    assert "characters)" in result.stdout  # image_data shortened
    assert "log lines of this invocation" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_function"], "no function 'no_such_function' in the stack: choose one of"),
        (["classify_image", "--event", "/nonexistent/event.json"], "--event /nonexistent/event.json: cannot read it"),
        (["classify_image", "--event", str(ROOT / "README.md")], "is not JSON"),
    ],
)
def test_bad_input_is_a_named_usage_error(stack, deploy_config, args, message):
    result = CliRunner().invoke(cli.app, ["invoke", *args, "--stack-name", deploy_config.stack_name])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.stderr
