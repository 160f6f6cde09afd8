"""The load ledger, small: 100 real images through the deployed workflow, 8 executions at a time, with
scones.workflow.ledger (the code benchmarks/load_ledger.py runs at 1000 x 32), and each item of the ledger asserted.

Against `docker compose` (tests/docker/run.py sets SCONES_IT_MODEL_URL) the model server runs in its own
container: its access log is the container's stdout and it captures nothing unless told, so the 5xx and
capture items cannot be read from here and are skipped in that mode only, saying so. On ministack and
LocalStack the suite's own model server writes both and the whole ledger is asserted."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from cloud.aws import AwsTarget
from scones.workflow.ledger import (
    Ledger,
    ModelServerFiles,
    check_ledger,
    choose_images,
    format_ledger,
    image_digest,
    run_ledgered_batch,
)

from .conftest import ENDPOINT_NAME, MODEL_URL_VAR

pytestmark = pytest.mark.integration

EXECUTIONS = 100
CONCURRENCY = 8
EXECUTION_TIMEOUT_S = 180.0
EXTERNAL_REASON = (
    f"{MODEL_URL_VAR} is set: the model server runs in its own container (docker compose), whose access log "
    "and captures this process cannot read"
)


@pytest.fixture(scope="module")
def ledger(stack, model_server, data_dir) -> Ledger:
    images, distinct = choose_images(data_dir, EXECUTIONS)
    assert distinct >= EXECUTIONS, f"only {distinct} images under {data_dir}: they would repeat"
    readable = model_server.log_path is not None
    files = ModelServerFiles(
        ENDPOINT_NAME,
        model_server.log_path,
        model_server.capture_destination,
        unreadable_reason=None if readable else EXTERNAL_REASON,
        url=model_server.url,
    )
    ledger, _ = run_ledgered_batch(
        AwsTarget(), stack, images, files, concurrency=CONCURRENCY, timeout_s=EXECUTION_TIMEOUT_S
    )
    print(format_ledger(ledger, check_ledger(ledger)))
    return ledger


@pytest.fixture
def full_ledger(ledger, model_server) -> Ledger:
    if model_server.log_path is None:
        pytest.skip(EXTERNAL_REASON)
    assert ledger.access is not None and ledger.captures is not None
    return ledger


def test_the_ledger_balances(ledger):
    assert check_ledger(ledger) == [], format_ledger(ledger, check_ledger(ledger))


def test_every_image_is_accounted_for_exactly_once(ledger):
    assert [o.path for o in ledger.outcomes] == ledger.submitted
    assert len(set(ledger.submitted)) == EXECUTIONS
    assert sum(ledger.by_outcome.values()) == EXECUTIONS
    # Real images and a healthy server: nothing should fail (a named failure would balance, but be a defect).
    assert ledger.by_outcome["failed"] == 0, ledger.errors
    assert ledger.by_outcome["routed"] > 0 and ledger.by_outcome["rejected"] > 0, ledger.by_outcome
    for o in ledger.outcomes:
        assert o.scores and len(o.scores) == 2, o
        assert (o.outcome == "rejected") == (o.error == "LowConfidenceError"), o


def test_every_execution_is_terminal_and_belongs_to_one_image(ledger, stack):
    sfn = boto3.client("stepfunctions")
    running = sfn.list_executions(stateMachineArn=stack["StateMachineArn"], statusFilter="RUNNING")["executions"]
    assert running == []
    arns = [o.execution_arn for o in ledger.outcomes]
    assert len(set(arns)) == EXECUTIONS
    assert set(ledger.executions) == set(arns)
    expected = {"SUCCEEDED": ledger.by_outcome["routed"], "FAILED": ledger.by_outcome["rejected"]}
    assert ledger.statuses == {status: n for status, n in expected.items() if n}


def test_the_model_server_answered_no_request_with_a_5xx(full_ledger):
    access = full_ledger.access
    assert access.server_errors == 0, access.by_status
    # Each image was scored by the server at least once; retries may add requests, never remove them.
    assert access.served >= EXECUTIONS, access.by_status


def test_one_capture_record_per_served_request(full_ledger):
    captures, access = full_ledger.captures, full_ledger.access
    assert len(captures) == access.served
    digests = {image_digest(path) for path in full_ledger.submitted}
    captured = [hashlib.sha256(record.input_body).hexdigest() for record in captures]
    assert set(captured) == digests  # every image of the batch, and none from elsewhere
    assert all(record.endpoint_name == ENDPOINT_NAME for record in captures)
    assert all(isinstance(record.output, list) and len(record.output) == 2 for record in captures)
