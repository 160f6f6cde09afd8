"""The console's store against moto's Step Functions: the executions list answers from ListExecutions alone,
the rows are described behind it (newest first) and filled in, an execution that ended is described once,
a status change is read again, and a failed DescribeExecution is retried at the next listing. Run again
against botocore's Stubber, with both answers an emulator may give to RedriveExecution. No network."""

from __future__ import annotations

import json
import threading

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from cloud.aws import AwsTarget
from scones.console import store as store_module
from scones.console.store import ConsoleActionError, ConsoleStore

DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
READ_TIMEOUT_S = 10.0


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setattr(store_module, "REFRESH_S", 0.0)  # every call lists again
    with mock_aws():
        session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        yield AwsTarget(session, allow_aws=True)  # moto answers in place of AWS


@pytest.fixture
def machine(aws) -> str:
    iam = aws.client("iam")
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    return aws.client("stepfunctions").create_state_machine(name="m", definition=DEFINITION, roleArn=role)[
        "stateMachineArn"
    ]


def start(aws: AwsTarget, machine: str, key: str) -> str:
    event = {"s3_bucket": "b", "s3_key": key}
    return aws.client("stepfunctions").start_execution(stateMachineArn=machine, input=json.dumps(event))["executionArn"]


def count_calls(aws: AwsTarget, operation: str) -> list[str]:
    calls = []

    def record(params, **_) -> None:
        calls.append(params.get("executionArn"))

    aws.client("stepfunctions").meta.events.register(f"provide-client-params.states.{operation}", record)
    return calls


def hold_describes(aws: AwsTarget) -> threading.Event:
    """DescribeExecution waits until the returned event is set (the list must not wait for it)."""
    release = threading.Event()

    def wait(**_) -> None:  # returns None: a value returned here would stand in for the answer
        release.wait(READ_TIMEOUT_S)

    aws.client("stepfunctions").meta.events.register("before-call.states.DescribeExecution", wait)
    return release


def test_the_list_answers_from_the_listing_before_any_execution_is_described(aws, machine):
    arns = [start(aws, machine, f"k/{i}.png") for i in range(5)]
    store = ConsoleStore(aws, {"StateMachineArn": machine})
    release = hold_describes(aws)
    described = count_calls(aws, "DescribeExecution")
    try:
        rows = store.executions()
        assert sorted(row.arn for row in rows) == sorted(arns)
        assert all(row.reading and row.key == "" and row.status == "RUNNING" for row in rows)
        assert all(row.outcome == "running" for row in rows)  # the status alone tells it
        assert store.reading == 5
    finally:
        release.set()
    assert store.wait_until_read(READ_TIMEOUT_S)
    rows = {row.arn: row for row in store.executions()}
    assert {rows[arn].key for arn in arns} == {f"k/{i}.png" for i in range(5)}
    assert not any(row.reading for row in rows.values())
    assert sorted(described) == sorted(arns)  # each described once
    store.close()


def test_an_execution_is_described_again_only_when_its_listed_status_changes(aws, machine):
    running, stopped = start(aws, machine, "k/running.png"), start(aws, machine, "k/stopped.png")
    store = ConsoleStore(aws, {"StateMachineArn": machine})
    store.executions()
    assert store.wait_until_read(READ_TIMEOUT_S)
    described = count_calls(aws, "DescribeExecution")
    for _ in range(3):
        store.executions()
        assert store.wait_until_read(READ_TIMEOUT_S)
    assert described == []  # nothing changed: listed again, not described again

    aws.client("stepfunctions").stop_execution(executionArn=stopped, error="States.Aborted", cause="stopped")
    rows = {row.arn: row for row in store.executions()}
    assert rows[stopped].status == "ABORTED"  # from the listing, at once
    assert rows[stopped].key == "k/stopped.png"  # what was read before stays
    assert store.wait_until_read(READ_TIMEOUT_S)
    rows = {row.arn: row for row in store.executions()}
    assert rows[stopped].outcome == "failed" and not rows[stopped].reading
    assert described == [stopped]
    for _ in range(3):  # it has ended: never described again
        store.executions()
        assert store.wait_until_read(READ_TIMEOUT_S)
    assert described == [stopped] and rows[running].status == "RUNNING"
    store.close()


def test_a_describe_that_fails_is_queued_again_at_the_next_listing(aws, machine):
    arn = start(aws, machine, "k/flaky.png")
    store = ConsoleStore(aws, {"StateMachineArn": machine})
    failures = [RuntimeError("throttled")]

    def fail_once(**_):
        if failures:
            raise failures.pop()

    aws.client("stepfunctions").meta.events.register("before-call.states.DescribeExecution", fail_once)
    store.executions()
    assert store.wait_until_read(READ_TIMEOUT_S)
    assert store.executions()[0].reading  # not read, and queued again by this listing
    assert store.wait_until_read(READ_TIMEOUT_S)
    row = store.executions()[0]
    assert row.arn == arn and row.key == "k/flaky.png" and not row.reading
    store.close()


def test_no_request_is_sent_until_a_page_asks(aws, machine):
    start(aws, machine, "k/0.png")
    listed = count_calls(aws, "ListExecutions")
    store = ConsoleStore(aws, {"StateMachineArn": machine})
    assert listed == [] and store.requests == 0
    store.executions()
    assert len(listed) == 1
    store.close()


# --- run again (botocore's Stubber: both answers an emulator may give to RedriveExecution) -----------------

MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:m"
FAILED_ARN = "arn:aws:states:us-east-1:000000000000:execution:m:failed"
FAILED_INPUT = {"s3_bucket": "b", "s3_key": "k/gone.png", "id": "the-first-runs-id"}


@pytest.fixture
def stubbed(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    aws = AwsTarget(session, allow_aws=True)  # the Stubber answers: nothing is sent
    with Stubber(aws.client("stepfunctions")) as stubber:
        yield ConsoleStore(aws, {"StateMachineArn": MACHINE_ARN}), stubber
        stubber.assert_no_pending_responses()


def described(status: str) -> dict:
    return {
        "executionArn": FAILED_ARN,
        "stateMachineArn": MACHINE_ARN,
        "name": "failed",
        "status": status,
        "startDate": "2026-01-01T00:00:00Z",
        "input": json.dumps(FAILED_INPUT),
    }


def test_a_failed_execution_is_redriven_where_the_emulator_can(stubbed):
    store, stubber = stubbed
    stubber.add_response("describe_execution", described("FAILED"), {"executionArn": FAILED_ARN})
    stubber.add_response("redrive_execution", {"redriveDate": "2026-01-01T00:01:00Z"}, {"executionArn": FAILED_ARN})
    assert store.rerun(FAILED_ARN) == {
        "execution_arn": FAILED_ARN,
        "how": "RedriveExecution",
        "why": "the emulator redrove it",
    }


def test_where_redrive_is_refused_the_same_input_starts_a_new_execution_with_its_own_id(stubbed):
    store, stubber = stubbed
    sent = []
    starting = "provide-client-params.states.StartExecution"
    store.sfn.meta.events.register(starting, lambda params, **_: sent.append(params))
    stubber.add_response("describe_execution", described("FAILED"), {"executionArn": FAILED_ARN})
    stubber.add_client_error("redrive_execution", "UnknownOperationException", "RedriveExecution is not implemented")
    stubber.add_response(
        "start_execution",
        {"executionArn": f"{FAILED_ARN}-again", "startDate": "2026-01-01T00:01:00Z"},
        {"stateMachineArn": MACHINE_ARN, "name": ANY, "input": ANY},
    )
    answer = store.rerun(FAILED_ARN)
    assert answer["execution_arn"] == f"{FAILED_ARN}-again"
    assert answer["how"] == "a new execution with the same input"
    assert "UnknownOperationException" in answer["why"] and "not implemented" in answer["why"]
    again = json.loads(sent[0]["input"])
    assert {k: v for k, v in again.items() if k != "id"} == {"s3_bucket": "b", "s3_key": "k/gone.png"}
    assert again["id"] != "the-first-runs-id" and sent[0]["name"].startswith("rerun-")


def test_only_a_failed_execution_is_run_again_and_an_unknown_one_is_said_so(stubbed):
    store, stubber = stubbed
    stubber.add_response("describe_execution", described("SUCCEEDED"), {"executionArn": FAILED_ARN})
    with pytest.raises(ConsoleActionError, match="only a failed execution"):
        store.rerun(FAILED_ARN)
    stubber.add_client_error("describe_execution", "ExecutionDoesNotExist", "no such execution")
    with pytest.raises(ConsoleActionError, match="no execution"):
        store.rerun(FAILED_ARN)


def test_rows_are_described_in_the_order_the_page_shows_them_newest_first(aws, machine):
    for i in range(4):
        start(aws, machine, f"k/{i}.png")
    store = ConsoleStore(aws, {"StateMachineArn": machine}, describe_threads=1)
    described = count_calls(aws, "DescribeExecution")
    shown = [row.arn for row in store.executions()]
    assert store.wait_until_read(READ_TIMEOUT_S)
    assert described == shown
    starts = [row.start for row in store.executions()]
    assert starts == sorted(starts, reverse=True)
    store.close()


def test_the_executions_of_solution_state_machines_are_listed_beside_the_stacks(aws, machine):
    """`scones solution run` names its state machines solution-*: the console lists their executions too."""
    iam = aws.client("iam")
    role = iam.create_role(RoleName="solution", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    sfn = aws.client("stepfunctions")
    solution = sfn.create_state_machine(name="solution-course", definition=DEFINITION, roleArn=role)["stateMachineArn"]
    sfn.create_state_machine(name="someone-else", definition=DEFINITION, roleArn=role)
    start(aws, machine, "k/own.png")
    start(aws, solution, "k/solution.png")
    store = ConsoleStore(aws, {"StateMachineArn": machine})
    rows = store.executions()
    assert sorted(row.machine for row in rows) == ["image", "solution-course"]
    assert store.wait_until_read(READ_TIMEOUT_S)
    assert {row.machine: row.key for row in store.executions()} == {
        "image": "k/own.png",
        "solution-course": "k/solution.png",
    }
    store.close()
