"""No credential reaches a log: a real deploy and a real workflow execution run with credentials
invented here, then every log this session can reach is searched for the secret: the deploy's
progress output, the model server's log, the Lambdas' CloudWatch Logs as the emulator keeps them,
the execution's history and the emulator's own log files."""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import boto3
import pytest

from cloud.aws import AwsTarget
from cloud.deploy import deploy_stack
from scones.workflow.execution import run_image

from .conftest import EMULATOR_CONTAINER_VAR, MODEL_URL_VAR

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0


def emulator_log_files() -> list[Path]:
    """The log files of the emulators started by this project under the temporary directory (ministack
    by scones/local/emulator.py, LocalStack by tests/localstack/run.py, its Lambda handlers' output too)."""
    root = Path(tempfile.gettempdir())
    patterns = (
        "scones-ministack-*/ministack.log",
        "scones-localstack-*/localstack.log",
        "scones-localstack-*/tmp/lambda-subprocess/*.log",
    )
    return [path for pattern in patterns for path in root.glob(pattern) if path.is_file()]


def emulator_container_log() -> str | None:
    """The log of the emulator's container, when the suite runs against docker compose; None otherwise."""
    where = os.environ.get(EMULATOR_CONTAINER_VAR)
    if not where:
        return None
    host, container = where.split(" ", 1)
    result = subprocess.run(
        ["docker", "--host", host, "logs", container], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout + result.stderr


def lambda_log_text(stack_name: str) -> str:
    logs = boto3.client("logs")
    text = []
    for group in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]:
        if stack_name not in group["logGroupName"]:
            continue
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group["logGroupName"]):
            text.extend(event["message"] for event in page["events"])
    return "\n".join(text)


def test_a_full_run_logs_no_credential(stack, deploy_config, test_images, tmp_path_factory, monkeypatch):
    secret = f"SconesSecret{secrets.token_hex(14)}"
    token = f"SconesToken{secrets.token_hex(14)}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", f"AKIASCONES{secrets.token_hex(5).upper()}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)

    progress: list[str] = []
    outputs = deploy_stack(deploy_config, AwsTarget(timeout_s=600, progress=progress.append))  # an update: up to date
    confident = next(iter(test_images.confident.values()))
    results = [
        run_image(chosen.path.read_bytes(), outputs, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
        for chosen in (confident, test_images.unsure)
    ]
    assert [r.status for r in results] == ["SUCCEEDED", "FAILED"], [r.summary() for r in results]

    sfn = boto3.client("stepfunctions")
    sources = {
        "deploy progress": "\n".join(progress),
        "execution history": "\n".join(
            str(sfn.get_execution_history(executionArn=r.execution_arn, maxResults=1000)["events"]) for r in results
        ),
        "Lambda logs": lambda_log_text(deploy_config.stack_name),
    }
    server_logs = list(tmp_path_factory.getbasetemp().glob("model-server*/server.log"))
    emulator_logs = emulator_log_files()
    for path in server_logs + emulator_logs:
        sources[str(path)] = path.read_text(errors="replace")
    container_log = emulator_container_log()
    if container_log is not None:
        sources["the emulator's container log"] = container_log

    # The searches read the run's real logs: its own traces are in them.
    assert "up to date" in sources["deploy progress"]
    assert results[0].output["s3_key"] in sources["Lambda logs"], "the emulator kept no Lambda logs of the run"
    assert server_logs or os.environ.get(MODEL_URL_VAR), "no model server log found"
    if container_log is None:
        assert emulator_logs, f"no emulator log under {tempfile.gettempdir()}"
    else:  # docker compose: LocalStack logs each request it answers
        assert "cloudformation.CreateChangeSet" in container_log, container_log[-2000:]
    leaks = [name for name, text in sources.items() if secret in text or token in text]
    assert leaks == [], f"the secret or the session token appears in: {leaks}"
