"""The ledger's checks, one by one: a balanced ledger has no problems, and each way of losing an image, an
execution, a request or a capture is named (no network: outcomes, executions, an access log and capture
records made here), and the stop sweep of an interrupted batch (botocore Stubber)."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from local_model.capture import build_capture_record
from local_model.capture_reader import CapturedInference
from scones.workflow.batch import INTERRUPTED_ERROR, ImageOutcome, StartedExecutions
from scones.workflow.ledger import (
    AccessCounts,
    Ledger,
    ModelServerFiles,
    build_ledger,
    check_ledger,
    count_invocations,
    format_ledger,
    log_offset,
    wait_for_captures,
    wait_for_settled_captures,
)

ENDPOINT = "ep"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def images(tmp_path) -> list[Path]:
    paths = []
    for i in range(3):
        path = tmp_path / f"image-{i}.png"
        path.write_bytes(b"\x89PNG fake image %d" % i)
        paths.append(path)
    return paths


def outcome(path: Path, what: str, arn: str | None, error: str | None = None) -> ImageOutcome:
    scores = None if what == "failed" else ([0.99, 0.01] if what == "routed" else [0.6, 0.4])
    if what == "rejected":
        error = error or "LowConfidenceError"
    return ImageOutcome(path, "bicycle", scores, what, 0.2, error=error, execution_arn=arn)


def execution(arn: str, status: str) -> dict:
    return {"executionArn": arn, "name": arn, "status": status, "startDate": NOW, "stopDate": NOW}


def capture(body: bytes) -> CapturedInference:
    record = build_capture_record(body, "image/png", "[0.99, 0.01]", "application/json")
    return CapturedInference.from_record(record, ENDPOINT, "file:1")


def balanced(images: list[Path]) -> Ledger:
    """Routed, rejected, failed with a named error: each once, served and captured as they should be."""
    outcomes = [
        outcome(images[0], "routed", "a"),
        outcome(images[1], "rejected", "b"),
        outcome(images[2], "failed", "c", error="ImageNotFoundError"),
    ]
    executions = {"a": execution("a", "SUCCEEDED"), "b": execution("b", "FAILED"), "c": execution("c", "FAILED")}
    captures = [capture(images[0].read_bytes()), capture(images[1].read_bytes())]
    return Ledger(images, outcomes, executions, AccessCounts({200: 2}), captures)


def test_a_balanced_ledger_has_no_problems(images):
    ledger = balanced(images)
    assert check_ledger(ledger) == []
    text = format_ledger(ledger, [])
    assert "1 routed + 1 rejected (LowConfidenceError) + 1 failed = 3" in text
    assert "1 x ImageNotFoundError" in text
    assert "RUNNING 0" in text and "OK: nothing lost" in text


def test_a_lost_image_is_named(images):
    ledger = balanced(images)
    ledger.outcomes.pop()
    problems = check_ledger(ledger)
    assert "3 images submitted but 2 outcomes" in problems
    assert any("started but belong to no image" in p for p in problems)  # execution c has no outcome now


def test_an_outcome_in_another_images_place_is_named(images):
    ledger = balanced(images)
    ledger.outcomes[0], ledger.outcomes[1] = ledger.outcomes[1], ledger.outcomes[0]
    assert any("belong to another image" in p for p in check_ledger(ledger))


@pytest.mark.parametrize("error", [None, "", "Runtime.HandlerError"])
def test_a_failure_without_a_named_error_is_named(images, error):
    ledger = balanced(images)
    ledger.outcomes[2] = outcome(images[2], "failed", "c", error=error)
    assert any("no named error" in p for p in check_ledger(ledger))


def test_a_rejection_for_another_reason_is_named(images):
    ledger = balanced(images)
    ledger.outcomes[1] = outcome(images[1], "rejected", "b", error="EndpointError")
    assert any("not rejected with LowConfidenceError" in p for p in check_ledger(ledger))


def test_a_running_execution_is_named(images):
    ledger = balanced(images)
    ledger.executions["c"] = execution("c", "RUNNING")
    assert any("1 executions are not terminal" in p for p in check_ledger(ledger))


def test_an_execution_counted_twice_is_named(images):
    ledger = balanced(images)
    ledger.outcomes[2] = outcome(images[2], "failed", "b", error="ImageNotFoundError")
    problems = check_ledger(ledger)
    assert any("counted for more than one image" in p for p in problems)


def test_an_outcome_that_disagrees_with_its_execution_is_named(images):
    ledger = balanced(images)
    ledger.executions["a"] = execution("a", "FAILED")
    assert any("image-0.png is routed but its execution FAILED" in p for p in check_ledger(ledger))


def test_an_execution_step_functions_does_not_list_is_named(images):
    ledger = balanced(images)
    del ledger.executions["c"]
    assert any("not listed by Step Functions" in p for p in check_ledger(ledger))


def test_a_5xx_and_too_few_served_requests_are_named(images):
    ledger = balanced(images)
    ledger.access = AccessCounts({200: 1, 500: 1})
    problems = check_ledger(ledger)
    assert "the model server answered 1 requests with a 5xx" in problems
    assert "2 images were scored but the model server served 1 requests" in problems


def test_captures_must_match_served_requests_one_for_one(images):
    ledger = balanced(images)
    ledger.access = AccessCounts({200: 3})  # a retried request was served twice: it needs two records
    assert "2 capture records for 3 served requests (want one each)" in check_ledger(ledger)
    ledger.captures.append(capture(images[1].read_bytes()))
    assert check_ledger(ledger) == []


def test_a_capture_of_another_image_and_a_missing_capture_are_named(images):
    ledger = balanced(images)
    ledger.captures[1] = capture(b"not from this batch")
    problems = check_ledger(ledger)
    assert "1 capture records hold an image this batch did not send" in problems
    assert "1 scored images have no capture record, e.g. image-1.png" in problems


ACCESS_LOG = """\
INFO:     Uvicorn running on http://127.0.0.1:1 (Press CTRL+C to quit)
INFO:     127.0.0.1:1 - "GET /ping HTTP/1.1" 200 OK
INFO:     127.0.0.1:2 - "POST /endpoints/ep/invocations HTTP/1.1" 200 OK
INFO:     127.0.0.1:3 - "POST /endpoints/other/invocations HTTP/1.1" 200 OK
INFO:     127.0.0.1:4 - "POST /invocations HTTP/1.1" 200 OK
INFO:     127.0.0.1:5 - "POST /endpoints/ep/invocations HTTP/1.1" 424 Failed Dependency
INFO:     127.0.0.1:6 - "POST /endpoints/ep/invocations HTTP/1.1" 500 Internal Server Error
"""


def test_the_access_log_counts_this_endpoints_invocations_by_status(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(ACCESS_LOG)
    counts = count_invocations(log, ENDPOINT)
    assert counts.by_status == {200: 1, 424: 1, 500: 1}
    assert (counts.requests, counts.served, counts.server_errors) == (3, 1, 1)


def test_the_access_log_is_read_from_where_the_batch_started(tmp_path):
    log = tmp_path / "server.log"
    assert log_offset(log) == 0  # not written yet
    log.write_text(ACCESS_LOG)
    start = log_offset(log)
    with log.open("a") as f:
        f.write('INFO:     127.0.0.1:7 - "POST /endpoints/ep/invocations HTTP/1.1" 200 OK\n')
    assert count_invocations(log, ENDPOINT, start).by_status == {200: 1}


def test_build_ledger_says_what_it_could_not_check(images):
    server = ModelServerFiles(ENDPOINT, unreadable_reason="the model server runs in another container")
    ledger = build_ledger(images, balanced(images).outcomes, balanced(images).executions, server)
    assert ledger.access is None and ledger.captures is None
    assert set(ledger.not_checked) == {"no 5xx", "requests served", "captures"}
    assert check_ledger(ledger) == []
    assert "not checked   captures: the model server runs in another container" in format_ledger(ledger, [])


def test_build_ledger_waits_for_as_many_captures_as_served_requests(images, tmp_path):
    log = tmp_path / "server.log"
    log.write_text(ACCESS_LOG)
    asked = []
    server = ModelServerFiles(ENDPOINT, log, str(tmp_path / "captures"))
    ledger = build_ledger(
        images, [], {}, server, read_captures=lambda expected: asked.append(expected) or [capture(b"x")]
    )
    assert asked == [1]  # one request to this endpoint was served
    assert len(ledger.captures) == 1


def test_wait_for_captures_stops_at_the_deadline_with_what_it_read():
    reads = iter([[], [capture(b"x")], [capture(b"x")]])
    assert len(wait_for_captures(lambda: next(reads), expected=1, timeout_s=5)) == 1
    assert wait_for_captures(lambda: [], expected=1, timeout_s=0.3) == []


def test_capture_records_are_matched_to_images_by_their_bytes(images):
    record = capture(images[0].read_bytes())
    assert hashlib.sha256(record.input_body).digest() == hashlib.sha256(images[0].read_bytes()).digest()


# --- the batch's stop sweep (botocore Stubber) ------------------------------------------------------


def sfn_client():
    return boto3.client("stepfunctions", region_name="us-east-1")


def described(arn: str, status: str) -> dict:
    return {"executionArn": arn, "stateMachineArn": "arn:sm", "status": status, "startDate": NOW}


def test_the_sweep_stops_what_runs_and_leaves_what_ended():
    sfn = sfn_client()
    started = StartedExecutions(sfn)
    assert started.record("arn:running") and started.record("arn:done")
    with Stubber(sfn) as stub:
        stub.add_response("describe_execution", described("arn:running", "RUNNING"), {"executionArn": "arn:running"})
        stop = {"executionArn": "arn:running", "error": INTERRUPTED_ERROR, "cause": ANY}
        stub.add_response("stop_execution", {"stopDate": NOW}, stop)
        stub.add_response("describe_execution", described("arn:done", "SUCCEEDED"), {"executionArn": "arn:done"})
        assert started.stop_all() == ["arn:running"]
        stub.assert_no_pending_responses()


def test_an_execution_started_during_the_sweep_stops_itself():
    """The worker whose StartExecution returns after the sweep began is told so, and stops its execution."""
    sfn = sfn_client()
    started = StartedExecutions(sfn)
    assert started.stop_all() == []  # nothing recorded yet
    with Stubber(sfn) as stub:
        stub.add_response("describe_execution", described("arn:late", "RUNNING"), {"executionArn": "arn:late"})
        stub.add_response("stop_execution", {"stopDate": NOW}, {"executionArn": "arn:late", "error": ANY, "cause": ANY})
        assert started.record("arn:late") is False
        stub.assert_no_pending_responses()
    assert started.arns == ["arn:late"]


def test_a_failed_stop_is_reported_and_the_sweep_goes_on():
    sfn = sfn_client()
    started = StartedExecutions(sfn)
    started.record("arn:a")
    started.record("arn:b")
    with Stubber(sfn) as stub:
        stub.add_client_error("describe_execution", "ExecutionDoesNotExist", expected_params={"executionArn": "arn:a"})
        stub.add_response("describe_execution", described("arn:b", "RUNNING"), {"executionArn": "arn:b"})
        stub.add_response("stop_execution", {"stopDate": NOW}, {"executionArn": "arn:b", "error": ANY, "cause": ANY})
        assert started.stop_all() == ["arn:b"]
        stub.assert_no_pending_responses()


def test_waiting_for_settled_captures_polls_ping_until_nothing_is_buffered():
    """A real HTTP server answering /ping as the model server does, with 2, then 1, then 0 records left."""
    answers = iter([2, 1, 0])
    asked = []

    class Ping(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = json.dumps({"status": "healthy", "capture": {"records_buffered": next(answers)}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_for_settled_captures(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=10)
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["/ping"] * 3
