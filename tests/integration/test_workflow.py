"""The workflow end to end on a real emulator: real deploy, real model server, real images in S3, real
executions polled with a deadline. Runs unchanged against any emulator at AWS_ENDPOINT_URL."""

from __future__ import annotations

import base64
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cloud.aws import AwsTarget
from cloud.deploy import deploy_stack
from lambdas.contract import CLASSES, MAX_EVENT_BYTES
from scones import cli
from scones.errors import EXIT_REJECTED
from scones.workflow.execution import run_image, run_workflow, upload_image

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0  # generous: cold starts on two shared cores; a normal run takes about a second


@pytest.fixture(autouse=True)
def nothing_left_running(request):
    """After each test, no execution of the workflow may still be running."""
    yield
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        running = boto3.client("stepfunctions").list_executions(
            stateMachineArn=stack["StateMachineArn"], statusFilter="RUNNING"
        )["executions"]
        assert running == [], f"executions left running: {[e['name'] for e in running]}"


def test_stack_outputs_name_the_deployed_resources(stack, deploy_config, sfn, s3):
    machine = sfn.describe_state_machine(stateMachineArn=stack["StateMachineArn"])
    assert machine["status"] == "ACTIVE"
    assert "${" not in machine["definition"]  # every placeholder was substituted
    s3.head_bucket(Bucket=stack["ImageBucketName"])
    assert stack["ModelEndpointName"] == deploy_config.model_endpoint_name
    assert float(stack["ConfidenceThreshold"]) == deploy_config.confidence_threshold


@pytest.mark.parametrize("label", CLASSES)
def test_a_confident_image_is_routed_with_its_class(stack, test_images, label):
    chosen = test_images.confident[label]
    image = chosen.path.read_bytes()
    result = run_image(image, stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
    assert result.status == "SUCCEEDED", result.summary()
    assert result.label == label
    assert result.inferences == pytest.approx(chosen.scores, abs=1e-6)
    assert base64.b64decode(result.output["image_data"]) == image
    assert result.output["s3_bucket"] == stack["ImageBucketName"]


def test_an_unsure_image_fails_with_low_confidence_error(stack, deploy_config, test_images, sfn):
    chosen = test_images.unsure
    result = run_image(chosen.path.read_bytes(), stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
    assert result.status == "FAILED", result.summary()
    assert result.error_name == "LowConfidenceError", result.summary()
    assert f"{max(chosen.scores):.4f}" in result.error_message
    assert f"threshold {deploy_config.confidence_threshold}" in result.error_message
    # The scores it was rejected on are known (from the Classify Image state), though there is no output.
    assert result.label is None and result.inferences == pytest.approx(chosen.scores, abs=1e-6)
    events = sfn.get_execution_history(executionArn=result.execution_arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    last_state = entered[-1]
    if result.error == "LowConfidenceError":
        # As on AWS (and LocalStack): the Catch routes the error to the Fail state.
        assert last_state == "Low Confidence"
    else:
        # ministack reports every handler exception as Runtime.HandlerError, which the Catch cannot
        # match, so the execution fails in the filter task itself (cloud/EMULATORS.md).
        assert (result.error, last_state) == ("Runtime.HandlerError", "Filter Low Confidence")


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_input(case: str, stack: dict, s3, test_images) -> dict:
    """The event for one bad input, after putting whatever object it needs into the stack's bucket."""
    bucket = stack["ImageBucketName"]
    key = f"bad-inputs/{uuid.uuid4().hex}"
    if case == "missing keys":
        return {"s3_key": "images/bicycle.png"}
    if case == "malformed keys":
        return {"s3_bucket": "Not A Bucket!", "s3_key": 7}
    if case == "missing bucket":
        return {"s3_bucket": f"scones-missing-{uuid.uuid4().hex[:12]}", "s3_key": "images/bicycle.png"}
    if case == "missing object":
        return {"s3_bucket": bucket, "s3_key": f"{key}.png"}
    if case == "not an image":
        s3.put_object(Bucket=bucket, Key=f"{key}.txt", Body=b"a delivery note, not a picture")
        return {"s3_bucket": bucket, "s3_key": f"{key}.txt"}
    if case == "too large":
        noise = np.random.default_rng(0).integers(0, 256, size=(320, 320, 3), dtype=np.uint8)
        image = png(noise)
        assert len(image) * 4 / 3 > MAX_EVENT_BYTES
        return {"s3_bucket": bucket, "s3_key": upload_image(s3, bucket, image)}
    if case == "endpoint error":
        # A PNG signature and header with the pixel data cut off: the model server cannot decode it.
        truncated = test_images.confident["bicycle"].path.read_bytes()[:64]
        return {"s3_bucket": bucket, "s3_key": upload_image(s3, bucket, truncated, key=f"{key}.png")}
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "error_name"),
    [
        ("missing keys", "InvalidEventError"),
        ("malformed keys", "InvalidEventError"),
        ("missing bucket", "BucketNotFoundError"),
        ("missing object", "ImageNotFoundError"),
        ("not an image", "NotAnImageError"),
        ("too large", "ImageTooLargeError"),
        ("endpoint error", "EndpointError"),
    ],
)
def test_a_bad_input_fails_with_its_named_error(stack, s3, test_images, case, error_name):
    event = bad_input(case, stack, s3, test_images)
    result = run_workflow(event, stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
    assert result.status == "FAILED", result.summary()
    assert result.error_name == error_name, result.summary()
    assert result.error_message.startswith(f"{error_name}: ")
    assert "Traceback" not in result.error_message and "KeyError" not in result.error_message


def test_the_endpoint_error_carries_the_model_servers_reason(stack, deploy_config, s3, test_images):
    result = run_workflow(
        bad_input("endpoint error", stack, s3, test_images), stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S
    )
    assert result.error_name == "EndpointError"
    assert "ModelError" in result.error_message
    assert deploy_config.model_endpoint_name in result.error_message


def test_redeploying_unchanged_changes_nothing(stack, deploy_config):
    cfn = boto3.client("cloudformation")

    def resources() -> dict[str, str]:
        summaries = cfn.list_stack_resources(StackName=deploy_config.stack_name)["StackResourceSummaries"]
        return {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in summaries}

    before = resources()
    assert deploy_stack(deploy_config, AwsTarget(timeout_s=300)) == stack
    assert resources() == before  # nothing replaced


def test_executions_run_concurrently(stack, test_images):
    image = test_images.confident["motorcycle"].path.read_bytes()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda _: run_image(image, stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S), range(4))
        )
    assert [r.label for r in results] == ["motorcycle"] * 4, [json.dumps(r.summary()) for r in results]
    # Concurrently, by Step Functions' own clock: some execution started before another had stopped.
    overlapping = [
        (a.execution_arn, b.execution_arn)
        for a in results
        for b in results
        if a is not b and a.start_date <= b.start_date < a.stop_date
    ]
    assert overlapping, [(r.start_date.isoformat(), r.stop_date.isoformat()) for r in results]


def test_scones_classify_json_of_a_rejected_image_carries_its_scores(stack, deploy_config, test_images, tmp_path):
    chosen = test_images.unsure
    common = ["--stack-name", deploy_config.stack_name, "--workdir", str(tmp_path), "--json"]
    ran = CliRunner().invoke(cli.app, ["classify", str(chosen.path), *common], prog_name="scones")
    assert ran.exit_code == EXIT_REJECTED, (ran.stdout, ran.stderr)
    printed = json.loads(ran.stdout)
    assert (printed["status"], printed["error"], printed["label"]) == ("FAILED", "LowConfidenceError", None)
    assert printed["inferences"] == pytest.approx(chosen.scores, abs=1e-6)


def test_scones_outputs_prints_the_deployed_stacks_outputs(stack, deploy_config, tmp_path):
    common = ["--stack-name", deploy_config.stack_name, "--workdir", str(tmp_path)]
    ran = CliRunner().invoke(cli.app, ["outputs", *common, "--json"], prog_name="scones")
    assert ran.exit_code == 0, (ran.stdout, ran.stderr)
    assert json.loads(ran.stdout) == stack
    text = CliRunner().invoke(cli.app, ["outputs", *common], prog_name="scones").stdout
    assert "StateMachineArn" in text and stack["StateMachineArn"] in text
