"""Ctrl-C during a batch stops the executions it started: a real batch (scones.workflow.batch.run_workflow_batch) in a
child process, SIGINT once its executions are running, then no execution of the state machine is RUNNING
and the ones the batch started are ABORTED with the batch's error, and stay so.

So that the interrupt lands mid-batch every time, the model server behind this test's own stack is paused
(SIGSTOP) while the batch runs: each execution waits in Classify Image until the test signals, whatever the
machine's speed. The package's model server is not touched. Against `docker compose` (SCONES_IT_MODEL_URL
set) the Lambdas reach only the compose model server, which this test cannot pause: skipped there."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from cloud.aws import AwsTarget
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from scones.local.model_server import ModelServer
from scones.workflow.batch import INTERRUPTED_ERROR
from scones.workflow.execution import CLASSIFY_STATE
from scones.workflow.ledger import choose_images, count_invocations, list_batch_executions

from .conftest import MODEL_URL_VAR
from .up_process import ctrl_c_as_in_a_terminal

pytestmark = pytest.mark.integration

IMAGES = 40
CONCURRENCY = 4
DEADLINE_S = 60.0
ENDPOINT_NAME = "scones-it-interrupt"
INTERRUPT_DEADLINE_S = 30.0  # Ctrl-C to exit: the stop sweep plus at most batch.STOP_CONFIRM_S
AFTERMATH_S = 3.0  # how long the stopped executions are watched once their tasks could complete

# The child: one batch, as the CLI runs it, on images given as arguments.
DRIVER = """
import json, sys
from pathlib import Path
from cloud.aws import AwsTarget
from scones.workflow.batch import run_workflow_batch
outputs, prefix, concurrency, paths = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
images = [(Path(p), Path(p).parent.name) for p in paths]
run_workflow_batch(AwsTarget(), outputs, images, concurrency=concurrency, name_prefix=prefix, start_executions=True)
print("the batch finished without being interrupted")
"""


@pytest.fixture(scope="module")
def paused_server(model_dir, tmp_path_factory):
    if os.environ.get(MODEL_URL_VAR):
        pytest.skip(f"{MODEL_URL_VAR} is set: the Lambdas reach only the compose model server, which cannot be paused")
    files = tmp_path_factory.mktemp("interrupt-server")
    with ModelServer(model_dir, log_path=files / "server.log", endpoint_name=ENDPOINT_NAME) as server:
        yield server


@pytest.fixture(scope="module")
def slow_stack(aws_endpoint, paused_server):
    name = f"scones-it-int-{uuid.uuid4().hex[:8]}"
    config = DeployConfig(stack_name=name, model_endpoint_name=ENDPOINT_NAME, model_endpoint_url=paused_server.url)
    try:
        yield deploy_stack(config, AwsTarget(timeout_s=600))
    finally:
        teardown_stack(AwsTarget(timeout_s=600), name)


def wait_until(condition, what: str, deadline_s: float = DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {deadline_s:.0f} s")
        time.sleep(0.1)
    return value


def statuses(executions: dict[str, dict]) -> dict[str, str]:
    return {arn: e["status"] for arn, e in executions.items()}


def test_ctrl_c_stops_the_executions_the_batch_started(slow_stack, paused_server, data_dir):
    sfn = boto3.client("stepfunctions")
    machine = slow_stack["StateMachineArn"]
    prefix = f"interrupt-{uuid.uuid4().hex[:8]}"
    images, _ = choose_images(data_dir, IMAGES)
    ours = lambda: list_batch_executions(sfn, machine, prefix)  # noqa: E731
    os.kill(paused_server.pid, signal.SIGSTOP)
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(slow_stack), prefix, str(CONCURRENCY)]
            + [str(path) for path, _ in images],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
            preexec_fn=ctrl_c_as_in_a_terminal,  # stopped with SIGINT below, as Ctrl-C would
        )
        try:
            # Every worker's execution is in flight, in the state that waits for the paused model server.
            wait_until(lambda: waiting_for_the_model(sfn, ours()) == CONCURRENCY, f"{CONCURRENCY} executions waiting")
            child.send_signal(signal.SIGINT)
            # Promptly, although the executions' tasks are still waiting for the model server.
            out, err = child.communicate(timeout=INTERRUPT_DEADLINE_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        before = statuses(ours())  # while the model server is still paused
    finally:
        os.kill(paused_server.pid, signal.SIGCONT)

    assert "KeyboardInterrupt" in err, err[-2000:]
    assert "the batch finished" not in out
    assert f"stopped {CONCURRENCY} running executions of this batch" in err, err[-2000:]
    assert child.returncode == -signal.SIGINT, (child.returncode, err[-2000:])  # died of the interrupt
    # Nothing queued was started after the interrupt: only the executions in flight exist. AWS and ministack
    # report a stopped execution ABORTED at once; LocalStack keeps it RUNNING until its task returns, and the
    # batch says how many still report RUNNING.
    print("\n".join(line for line in err.splitlines() if "of this batch" in line or "still report" in line))
    lagging = int(m.group(1)) if (m := re.search(r"(\d+) of them still report RUNNING", err)) else 0
    assert sorted(before.values()) == ["ABORTED"] * (CONCURRENCY - lagging) + ["RUNNING"] * lagging, (before, err)
    # Once the model server answers again, no execution of the state machine is RUNNING: all ABORTED, by us.
    wait_until(
        lambda: not sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"],
        "every execution terminal",
    )
    started = statuses(ours())
    assert list(started.values()) == ["ABORTED"] * CONCURRENCY, started
    assert [aborted_with(sfn, arn) for arn in started] == [INTERRUPTED_ERROR] * CONCURRENCY
    # The resumed server now answers the Lambdas that were waiting (where the emulator lets an aborted
    # execution's task run on): the executions must stay ABORTED, and nothing more may start.
    log = Path(paused_server.log_path)
    served = lambda: count_invocations(log, ENDPOINT_NAME).served  # noqa: E731
    with contextlib.suppress(AssertionError):  # an emulator may cancel the task instead: then none come
        wait_until(lambda: served() >= CONCURRENCY, "the waiting requests served", AFTERMATH_S * 5)
    observed_until = time.monotonic() + AFTERMATH_S
    while time.monotonic() < observed_until:
        assert statuses(ours()) == started, f"after {served()} waiting requests were served"
        time.sleep(0.2)
    assert served() <= CONCURRENCY  # no execution started after the interrupt reached the model


def aborted_with(sfn, arn: str) -> str | None:
    """The error its ExecutionAborted history event names (describe_execution omits it on LocalStack)."""
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for event in page["events"]:
            if event["type"] == "ExecutionAborted":
                return (event.get("executionAbortedEventDetails") or {}).get("error")
    return None


def waiting_for_the_model(sfn, executions: dict[str, dict]) -> int:
    """How many of the running executions have entered the state that calls the model."""
    return sum(e["status"] == "RUNNING" and entered(sfn, arn, CLASSIFY_STATE) for arn, e in executions.items())


def entered(sfn, arn: str, state: str) -> bool:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return any(
        (event.get("stateEnteredEventDetails") or {}).get("name") == state for page in pages for event in page["events"]
    )
