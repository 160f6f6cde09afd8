"""Faults on the real parts: the model server killed and restarted mid-batch, a model server slower than the
classifier's timeout, an image deleted before its execution, the emulator restarted under a deployed CLI
session, and a capture destination the model server cannot write. Each ends in a known state: routed, or
failed with a named error; no execution is left RUNNING and no lost capture goes unreported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from cloud.aws import AwsTarget
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from cloud.stack import stack_status
from lambdas import clients
from lambdas.classify_image import invoke_endpoint
from local_model.capture import CAPTURE_WRITE_ERROR
from scones.errors import EXIT_ENVIRONMENT, EXIT_OK
from scones.local.emulator import Ministack, local_aws_environment
from scones.local.model_server import ModelServer
from scones.local.supervisor import free_port
from scones.workflow.execution import ExecutionResult, run_workflow, start_execution, upload_image, wait_for_execution

from .conftest import CONFIDENCE_THRESHOLD, ENDPOINT_NAME, MODEL_URL_VAR

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXECUTION_TIMEOUT_S = 120.0
BATCH = 6  # executions in flight when the model server dies
FAULT_SEEN_TIMEOUT_S = 60.0
# The classifier's Timeout for the slow-server case: short, so the test waits seconds rather than minutes.
# Its endpoint timeouts shrink with it (lambdas/clients.py); the template's 60 s is checked statically below.
SHORT_LAMBDA_TIMEOUT_S = 15
# Retries of EndpointUnavailableError in statemachine/image_classification.asl.json: 3 more attempts after
# at most 2, 4 and 8 s (full jitter). Only emulators that keep error names apply them (cloud/EMULATORS.md).
ASL_ENDPOINT_ATTEMPTS, ASL_ENDPOINT_BACKOFF_S = 4, 2 + 4 + 8
HOST_ONLY = pytest.mark.skipif(
    bool(os.environ.get(MODEL_URL_VAR)),
    reason="the Lambdas run in the LocalStack container (docker compose) and cannot reach a model server "
    "this test starts on the host's loopback",
)


def running(sfn, outputs: dict) -> list[str]:
    executions = sfn.list_executions(stateMachineArn=outputs["StateMachineArn"], statusFilter="RUNNING")
    return [e["name"] for e in executions["executions"]]


@pytest.fixture(scope="module")
def fault_port() -> int:
    """The port the fault stack's classifier calls: each test puts its own server (or none) there."""
    return free_port()


@pytest.fixture(scope="module")
def fault_stack(aws_endpoint, fault_port) -> dict[str, str]:
    """A second stack whose classifier calls 127.0.0.1:fault_port, so a test can kill what listens there."""
    name = f"scones-faults-{uuid.uuid4().hex[:8]}"
    config = DeployConfig(
        stack_name=name,
        model_endpoint_name=ENDPOINT_NAME,
        model_endpoint_url=f"http://127.0.0.1:{fault_port}",
        confidence_threshold=CONFIDENCE_THRESHOLD,
    )
    try:
        yield deploy_stack(config, AwsTarget(timeout_s=600))
    finally:
        teardown_stack(AwsTarget(timeout_s=600), name)
        assert stack_status(boto3.client("cloudformation"), name) is None, f"stack {name} was not deleted"


def failed_task_attempts(sfn, execution_arn: str) -> list[str]:
    """The named error of every failed task attempt in the execution's history (retried ones included),
    read as ExecutionResult.error_name reads an execution's (ministack: from the message)."""
    names = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        for event in page["events"]:
            details = event.get("taskFailedEventDetails") or event.get("lambdaFunctionFailedEventDetails")
            if details:
                now = event["timestamp"]
                attempt = ExecutionResult("", "FAILED", None, details.get("error"), details.get("cause"), now, now)
                names.append(attempt.error_name)
    return names


def wait_for_a_fault(sfn, arns: list[str], timeout_s: float) -> None:
    """Until one execution has a failed task attempt (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while not any(failed_task_attempts(sfn, arn) for arn in arns):
        assert time.monotonic() < deadline, f"no execution saw the dead model server within {timeout_s} s"
        time.sleep(0.2)


@HOST_ONLY
def test_model_server_killed_mid_batch_and_restarted(
    fault_stack, fault_port, model_dir, test_images, sfn, s3, tmp_path
):
    image = test_images.confident["bicycle"]
    key = upload_image(s3, fault_stack["ImageBucketName"], image.path.read_bytes())
    event = {"s3_bucket": fault_stack["ImageBucketName"], "s3_key": key}
    server = ModelServer(
        model_dir, port=fault_port, log_path=tmp_path / "server.log", endpoint_name=ENDPOINT_NAME
    ).start()
    try:
        warm = run_workflow(event, fault_stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
        assert warm.label == "bicycle", warm.summary()
        arns = [start_execution(sfn, fault_stack["StateMachineArn"], event, "killed") for _ in range(BATCH)]
        server.kill()  # SIGKILL while the batch runs
        wait_for_a_fault(sfn, arns, FAULT_SEEN_TIMEOUT_S)
        server.start()  # the same port: retries that come now reach it
        results = [wait_for_execution(sfn, arn, EXECUTION_TIMEOUT_S) for arn in arns]
        after = run_workflow(event, fault_stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
    finally:
        server.stop()
    assert running(sfn, fault_stack) == []
    for result in results:
        if result.status == "SUCCEEDED":  # a retry reached the restarted server
            assert result.label == "bicycle" and result.inferences == pytest.approx(image.scores, abs=1e-6)
        else:
            assert result.status == "FAILED", result.summary()
            assert result.error_name == "EndpointUnavailableError", result.summary()
            assert result.error_message.startswith("EndpointUnavailableError: "), result.summary()
            assert "could not be reached" in result.error_message, result.summary()
    attempts = [error for result in results for error in failed_task_attempts(sfn, result.execution_arn)]
    assert attempts and set(attempts) == {"EndpointUnavailableError"}, attempts
    assert after.label == "bicycle", after.summary()  # the restarted server serves the workflow again


class SlowProxy:
    """A real HTTP server on 127.0.0.1:port that holds each request for `delay_s` before passing it to
    `target` and relaying the answer; it counts the requests it received."""

    def __init__(self, port: int, target: str, delay_s: float):
        self.target, self.delay_s = target.rstrip("/"), delay_s
        self.requests = 0
        self.stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.requests += 1
                if proxy.stopping.wait(proxy.delay_s):
                    return  # closing: drop the connection unanswered
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, headers={"Content-Type": self.headers["Content-Type"]}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    payload = response.read()
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.headers["Content-Type"])
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SlowProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@HOST_ONLY
def test_a_model_server_slower_than_the_lambda_timeout_ends_in_a_named_error(
    fault_stack, fault_port, model_server, test_images, sfn, s3
):
    functions = boto3.client("lambda")
    name = fault_stack["ClassifyImageFunctionName"]
    original = functions.get_function_configuration(FunctionName=name)["Timeout"]

    def set_timeout(seconds: int) -> None:
        functions.update_function_configuration(FunctionName=name, Timeout=seconds)
        functions.get_waiter("function_updated_v2").wait(FunctionName=name)

    image = test_images.confident["motorcycle"].path.read_bytes()
    bucket = fault_stack["ImageBucketName"]
    event = {"s3_bucket": bucket, "s3_key": upload_image(s3, bucket, image)}
    set_timeout(SHORT_LAMBDA_TIMEOUT_S)
    bound_s = ASL_ENDPOINT_ATTEMPTS * SHORT_LAMBDA_TIMEOUT_S + ASL_ENDPOINT_BACKOFF_S + 10
    try:
        with SlowProxy(fault_port, model_server.url, delay_s=4 * SHORT_LAMBDA_TIMEOUT_S) as proxy:
            started = time.monotonic()
            result = run_workflow(event, fault_stack, AwsTarget(), timeout_s=bound_s)
            elapsed_s = time.monotonic() - started
    finally:
        set_timeout(original)
    assert running(sfn, fault_stack) == []
    assert result.status == "FAILED", result.summary()
    # Named by the classifier itself, not the platform's "Task timed out after 15.00 seconds".
    assert result.error_name == "EndpointUnavailableError", result.summary()
    assert "Read timeout" in result.error_message and "Task timed out" not in result.error_message, result.summary()
    assert elapsed_s < bound_s
    # boto3 retried inside each invocation; each invocation ended before its Timeout.
    invocations = ASL_ENDPOINT_ATTEMPTS if result.error == "EndpointUnavailableError" else 1
    assert proxy.requests == invocations * clients.MAX_ATTEMPTS, (proxy.requests, result.summary())
    assert result.seconds < invocations * SHORT_LAMBDA_TIMEOUT_S + ASL_ENDPOINT_BACKOFF_S + 5


def test_an_image_deleted_before_its_execution_fails_with_image_not_found(stack, test_images, sfn, s3):
    bucket = stack["ImageBucketName"]
    image = test_images.confident["bicycle"].path.read_bytes()
    key = upload_image(s3, bucket, image, key=f"faults/{uuid.uuid4().hex}.png")
    s3.head_object(Bucket=bucket, Key=key)  # it was there
    s3.delete_object(Bucket=bucket, Key=key)
    result = run_workflow({"s3_bucket": bucket, "s3_key": key}, stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
    assert result.status == "FAILED", result.summary()
    assert result.error_name == "ImageNotFoundError", result.summary()
    assert result.error_message.startswith("ImageNotFoundError: ") and key in result.error_message
    assert running(sfn, stack) == []


def scones(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scones", *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_the_cli_detects_an_emulator_restarted_since_deploy(model_server, test_images, tmp_path):
    """A ministack this test starts and restarts (on LocalStack's pass too: LocalStack cannot be restarted
    from here), driven through the real `scones` command."""
    port = free_port()
    workdir = tmp_path / "workdir"
    image = str(test_images.confident["bicycle"].path)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    stack = f"scones-restart-{uuid.uuid4().hex[:8]}"
    # This test's own ministack runs the Lambdas on the host: they reach the model server as the tests do.
    deploy = ["deploy", "--workdir", str(workdir), "--stack-name", stack, "--model-url", model_server.url]
    emulator = Ministack(port=port)
    emulator.start()
    try:
        deployed = scones(*deploy, env={**base, **local_aws_environment(emulator.endpoint_url)})
        assert deployed.returncode == EXIT_OK, deployed.stderr
        assert json.loads((workdir / "state.json").read_text())["aws_endpoint_url"] == emulator.endpoint_url
        emulator.stop()
        emulator = Ministack(port=port)  # a fresh emulator on the same port: it has no stack
        emulator.start()
        lost = scones("classify", image, "--workdir", str(workdir), env=base)  # the state file names the emulator
        assert lost.returncode == EXIT_ENVIRONMENT, (lost.stdout, lost.stderr)
        assert f"stack '{stack}'" in lost.stderr and "the emulator was restarted" in lost.stderr, lost.stderr
        assert "`scones deploy`" in lost.stderr, lost.stderr
        # The fix it names works.
        redeployed = scones(*deploy, env=base)
        assert redeployed.returncode == EXIT_OK, redeployed.stderr
        classified = scones("classify", image, "--workdir", str(workdir), "--json", env=base)
        assert classified.returncode == EXIT_OK, classified.stderr
        assert json.loads(classified.stdout)["label"] == "bicycle", classified.stdout
        torn_down = scones("teardown", "--workdir", str(workdir), env=base)
        assert torn_down.returncode == EXIT_OK, torn_down.stderr
    finally:
        emulator.stop()


def test_an_unwritable_capture_location_loses_no_answer_and_reports_every_lost_record(model_dir, data_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("the capture folder cannot be made below a file")
    destination = blocker / "capture"
    log = tmp_path / "server.log"
    bodies = [path.read_bytes() for path in sorted((data_dir / "bicycle").glob("*.png"))[:4]]
    server = ModelServer(
        model_dir,
        capture_destination=str(destination),
        endpoint_name=ENDPOINT_NAME,
        env={"SCONES_CAPTURE_FLUSH_SECONDS": "0.2"},
        log_path=log,
    )
    with server:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
            runtime = boto3.client("sagemaker-runtime")
        for body in bodies[:3]:  # answered with scores, through the SageMaker Runtime API
            scores = invoke_endpoint(runtime, ENDPOINT_NAME, body)
            assert len(scores) == 2 and sum(scores) == pytest.approx(1.0, abs=1e-5)
        deadline = time.monotonic() + 30
        while (capture := ping(server.url)["capture"])["records_dropped"] < 3:
            assert time.monotonic() < deadline, capture
            time.sleep(0.1)
        assert capture["records_written"] == 0 and capture["write_failures"] >= 1, capture
        assert capture["destination"] == str(destination)
        assert len(invoke_endpoint(runtime, ENDPOINT_NAME, bodies[3])) == 2  # still serving after the losses
    lines = log.read_text().splitlines()
    assert any(f"{CAPTURE_WRITE_ERROR}: capture destination {destination} is not writable" in line for line in lines)
    lost = [line for line in lines if f"{CAPTURE_WRITE_ERROR}: could not write" in line]
    counted = sum(int(line.split("could not write ", 1)[1].split()[0]) for line in lost)
    assert counted == len(bodies), lost  # every lost record reported, the last one when flushed on shutdown


def ping(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
        return json.loads(response.read())
