"""`scones solution run`: course-style solutions (tests/integration/course_solutions/, written for these tests) each
run in one command on the emulator, with the suite's model server: their functions and state machine created,
their ARNs mapped, every state's input and output printed, and each planted trap reported with what AWS would
do and the fix."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from scones import cli
from scones.errors import EXIT_FAILED, EXIT_OK
from scones.local.state_file import SessionState, write_state

pytestmark = pytest.mark.integration

SOLUTIONS = Path(__file__).parent / "course_solutions"


@pytest.fixture(scope="module")
def bucket(aws_endpoint) -> str:
    """A bucket of the solutions' own: a course solution needs no stack of ours."""
    name = f"scones-solution-it-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def run_solution(aws_endpoint, model_server, bucket, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("solution-workdir")

    def run(folder: str, definition: str, *sources: str, images: list[Path], extra: tuple[str, ...] = ()):
        root = SOLUTIONS / folder
        args = ["solution", "run", str(root / definition), *(str(root / s) for s in sources)]
        for image in images:
            args += ["--image", str(image)]
        args += ["--model-url", model_server.lambda_url, "--bucket", bucket, "--workdir", str(workdir), *extra]
        result = CliRunner().invoke(cli.app, args)
        print(result.output)  # the whole trace, when a test fails
        return result

    return run


def test_one_file_with_three_body_wrapped_handlers_and_a_payload_definition(run_solution, test_images, model_server):
    bicycle = test_images.confident["bicycle"].path
    result = run_solution("single_file", "statemachine.json", "lambda.py", images=[bicycle])
    assert result.exit_code == EXIT_OK, result.output
    out = result.output
    for function, handler in [
        ("serializeImageData", "serialize_image_data"),
        ("classifyImage", "classify_image"),
        ("filterLowConfidence", "filter_low_confidence"),
    ]:
        assert f"{function}" in out and f"lambda.py:{handler} (by name)" in out
    assert "no known trap found" in out
    assert f"{bicycle}: SUCCEEDED" in out
    for state in ("1. Serialize Image Data (Task)", "2. Classify Image (Task)", "3. Filter Low Confidence (Task)"):
        assert state in out
    assert '"image_data": "<' in out and "characters>" in out  # elided, never printed whole
    assert '"inferences": [0.9' in out or '"inferences": [1.0' in out
    assert "image-classification-2025-06-01-10-00-00-000" in out and "accepted in this mode" in out
    if model_server.log_path is not None:  # the server logs the name it answered for
        assert "'image-classification-2025-06-01-10-00-00-000' accepted" in model_server.log_path.read_text()


def test_separate_files_with_a_payload_body_definition_and_a_catch_into_a_pass_state(run_solution, test_images):
    confident, unsure = test_images.confident["motorcycle"].path, test_images.unsure.path
    result = run_solution(
        "separate_files", "definition.json", "serialize.py", "classify.py", "filter.py", images=[confident, unsure]
    )
    assert result.exit_code == EXIT_OK, result.output
    out = result.output
    assert "classify.py:lambda_handler (by name)" in out
    assert f"{confident}: SUCCEEDED" in out and f"{unsure}: SUCCEEDED" in out
    unsure_trace = out[out.index(f"{unsure}: SUCCEEDED") :]
    assert "4. Not Confident (Pass)" in unsure_trace  # the filter's error, caught into the Pass state
    assert "ThresholdConfidenceNotMet" in unsure_trace or "below 0.93" in unsure_trace
    assert "2 of 2 execution(s) succeeded" in out


def test_a_jsonata_definition_mapped_by_the_order_of_its_tasks_on_an_s3_key(run_solution, test_images, bucket):
    bicycle = test_images.confident["bicycle"].path
    key = f"course/{uuid.uuid4().hex}.png"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=bicycle.read_bytes())
    result = run_solution(
        "jsonata", "definition.asl.json", "serializer", "classifier", "filter", images=[f"s3://{bucket}/{key}"]
    )
    if "Installation of java 21 failed" in result.output:  # LocalStack offline: cloud/EMULATORS.md
        assert "LocalStack evaluates JSONata with a Java 21" in result.output  # the failure explained
        pytest.skip("LocalStack evaluates JSONata with a Java 21 it downloads on first use: not reachable here")
    assert result.exit_code == EXIT_OK, result.output
    out = result.output
    assert "scones-step-a" in out and "serializer/lambda_function.lambda_handler (by order)" in out
    assert f"s3://{bucket}/{key}: SUCCEEDED" in out
    assert f'"image_data": "", "s3_bucket": "{bucket}", "s3_key": "{key}"' in out  # the course's input, as it is
    assert "3. Lambda Invoke (2) (Task)" in out


def test_a_given_input_runs_once_and_json_tells_each_state(run_solution, test_images, bucket):
    key = f"course/{uuid.uuid4().hex}.png"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=test_images.unsure.path.read_bytes())
    event = {"image_data": "", "s3_bucket": bucket, "s3_key": key, "note": "mine"}
    result = run_solution(
        "separate_files",
        "definition.json",
        "serialize.py",
        "classify.py",
        "filter.py",
        images=[],
        extra=("--input", json.dumps(event), "--json"),
    )
    assert result.exit_code == EXIT_OK, result.output
    record = json.loads(result.stdout)
    (execution,) = record["executions"]
    assert execution["status"] == "SUCCEEDED" and execution["aws_failure"] is None
    states = {state["name"]: state for state in execution["states"]}
    assert list(states) == ["Serialize", "Classify", "Filter", "Not Confident"]
    assert states["Serialize"]["input"] == event
    assert states["Classify"]["input"]["image_data"].endswith("characters>")
    assert states["Filter"]["errors"]


def test_a_serializer_returning_bytes_is_reported_and_its_failure_explained(run_solution, test_images):
    result = run_solution(
        "traps_bytes", "statemachine.json", "lambda.py", images=[test_images.confident["bicycle"].path]
    )
    assert result.exit_code == EXIT_FAILED, result.output
    out = result.output
    assert "[bytes-result] lambda.py:13" in out and "Runtime.MarshalError" in out
    assert "fix: base64.b64encode(data).decode('utf-8')" in out
    failed = out[out.index(": FAILED") :]
    assert "1. Serialize Image Data (Task)" in failed and "why     [bytes-result]" in failed


def test_a_png_accept_a_swallowed_exception_and_a_json_string_body_are_reported(run_solution, test_images):
    result = run_solution(
        "traps_body", "statemachine.json", "lambda.py", images=[test_images.confident["bicycle"].path]
    )
    assert result.exit_code == EXIT_FAILED, result.output
    out = result.output
    assert "[accept-not-json] lambda.py:20" in out and "406" in out
    assert "[exception-swallowed] lambda.py:29" in out and "statusCode 500" in out
    assert "[body-is-a-string] lambda.py:34" in out and "json.loads(event['body'])" in out
    failed = out[out.index(": FAILED") :]
    # The run shows the chain: the 406 swallowed into a 500 that "succeeds", then the filter's misleading error.
    assert '"statusCode": 500' in failed and "406" in failed
    assert "why     [exception-swallowed]" in failed and "why     [accept-not-json]" in failed
    assert "THRESHOLD_CONFIDENCE_NOT_MET" in failed


def test_a_payload_body_path_on_a_result_without_body_fails_as_on_aws(run_solution, test_images):
    result = run_solution(
        "traps_path",
        "definition.json",
        "serialize.py",
        "classify.py",
        "filter.py",
        images=[test_images.confident["bicycle"].path],
    )
    assert result.exit_code == EXIT_FAILED, result.output
    out = result.output
    assert "[path-selects-nothing] state 'Serialize': OutputPath $.Payload.body" in out  # before the run
    run = out[out.index("creating it in") :]
    assert "OutputPath $.Payload.body selects nothing" in run and "States.Runtime" in run
    assert "0 of 1 execution(s) succeeded" in out


def test_a_client_with_its_own_endpoint_and_the_sagemaker_sdk_are_reported(run_solution, test_images):
    result = run_solution(
        "traps_endpoint",
        "definition.json",
        "serialize.py",
        "classify.py",
        "filter.py",
        images=[test_images.confident["bicycle"].path],
    )
    assert result.exit_code == EXIT_FAILED, result.output
    out = result.output
    assert "[runtime-endpoint-overridden] classify.py:11" in out and "bare 400" in out
    assert "[sagemaker-sdk-import] classify.py:15" in out and "layer" in out
    failed = out[out.index(": FAILED") :]
    assert "2. Classify (Task)" in failed and "InvokeEndpoint" in failed


def test_what_scones_up_recorded_is_used_with_no_option(aws_endpoint, model_server, bucket, test_images, tmp_path):
    """As the README runs it: the model server and the bucket come from the state file `scones up` writes."""
    state = SessionState(
        target="emulator",
        stack_name="scones",
        outputs={"ImageBucketName": bucket},
        aws_endpoint_url=aws_endpoint,
        model_server_url=model_server.lambda_url,
    )
    write_state(tmp_path, state)
    root = SOLUTIONS / "single_file"
    image = test_images.confident["motorcycle"].path
    args = ["solution", "run", str(root / "statemachine.json"), str(root / "lambda.py"), "--image", str(image)]
    result = CliRunner().invoke(cli.app, [*args, "--workdir", str(tmp_path)])
    print(result.output)
    assert result.exit_code == EXIT_OK, result.output
    assert f"(model server {model_server.lambda_url})" in result.output
    assert f'"s3_bucket": "{bucket}"' in result.output and f"{image}: SUCCEEDED" in result.output
