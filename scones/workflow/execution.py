"""Run the deployed workflow: upload an image to the stack's bucket, follow the execution the upload
trigger started (or start one with StartExecution where the stack has no trigger, or when asked), wait
for it with a deadline and read its result, named error included."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import ClientError

from cloud.aws import AwsTarget
from cloud.deploy import UPLOAD_TRIGGER_PREFIX
from cloud.polling import PollTimeoutError, poll
from lambdas.contract import (
    MAX_EVENT_BYTES,
    MAX_EVENT_DEPTH,
    ImageEvent,
    InvalidEventError,
    LowConfidenceError,
    Outcome,
    error_message,
    error_name,
    image_content_type,
    json_depth,
    outcome_of,
    predicted_class,
)

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg"}
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
CLASSIFY_STATE = "Classify Image"  # the state whose output holds the scores (statemachine/)
# Images for an explicit StartExecution go under a prefix no trigger watches, so they run exactly once.
DIRECT_PREFIX = "direct/"
TRIGGER_TIMEOUT_S = 30.0  # upload to the triggered execution being listed: about 0.1 s on both emulators
# An execution may be listed as started slightly before the client's clock read the upload time.
TRIGGER_CLOCK_SLACK = timedelta(seconds=2)


class WorkflowRunError(RuntimeError):
    """An execution could not be started or did not finish in time."""


class ExecutionTimeoutError(WorkflowRunError):
    """The execution was still running at the deadline (it has been stopped)."""


class TriggerNotFiredError(WorkflowRunError):
    """An image was uploaded under the trigger prefix, but no execution on it started in time."""


@dataclass(frozen=True)
class ExecutionResult:
    execution_arn: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or ABORTED
    output: dict | None
    error: str | None  # as Step Functions reports it
    cause: str | None
    start_date: datetime
    stop_date: datetime
    # The scores of a rejected execution, which has no output: its Classify Image state's, from the history.
    classified: list[float] | None = None

    @property
    def seconds(self) -> float:
        """StartExecution to the terminal state, by Step Functions' own clock."""
        return (self.stop_date - self.start_date).total_seconds()

    @property
    def error_message(self) -> str:
        """The failed function's message when the cause is a Lambda error payload, else the cause."""
        return error_message(self.cause)

    @property
    def error_name(self) -> str | None:
        """The named error (LowConfidenceError, ...), also from emulators that drop Lambda error names."""
        return error_name(self.error, self.cause)

    @property
    def outcome(self) -> Outcome:
        """Routed, rejected as low confidence, or failed."""
        return outcome_of(self.status, self.error, self.cause)

    @property
    def inferences(self) -> list[float] | None:
        """[p_bicycle, p_motorcycle]: the output's, or for a rejected image the scores it was rejected on."""
        return (self.output or {}).get("inferences") or self.classified

    @property
    def label(self) -> str | None:
        """The class the workflow routed the image as; None unless it succeeded."""
        return predicted_class(self.inferences) if self.status == "SUCCEEDED" else None

    def summary(self) -> dict:
        """The result without the image bytes, for printing."""
        output = {k: v for k, v in (self.output or {}).items() if k != "image_data"}
        return {
            "status": self.status,
            "label": self.label,
            "inferences": self.inferences,
            "error": self.error_name,
            "message": self.error_message or None,
            "seconds": round(self.seconds, 3),
            "output": output or None,
            "execution_arn": self.execution_arn,
        }


def image_key(image: bytes, prefix: str = UPLOAD_TRIGGER_PREFIX) -> str:
    """Content-addressed key: the same image is stored once."""
    extension = _EXTENSIONS[image_content_type(image)]
    return f"{prefix}{hashlib.sha256(image).hexdigest()}{extension}"


def upload_image(s3, bucket: str, image: bytes, key: str | None = None, prefix: str = DIRECT_PREFIX) -> str:
    """Put `image` into `bucket`, by default under DIRECT_PREFIX (no trigger: the caller starts the
    execution); under the stack's UploadTriggerPrefix the upload itself starts one."""
    key = key or image_key(image, prefix)
    s3.put_object(Bucket=bucket, Key=key, Body=image, ContentType=image_content_type(image))
    return key


def start_execution(sfn, state_machine_arn: str, event: dict, name_prefix: str = "run") -> str:
    """Start one execution with `event` as its input. An input the workflow would refuse for its shape
    (nested deeper than MAX_EVENT_DEPTH, larger than MAX_EVENT_BYTES) is refused here, before
    StartExecution, with InvalidEventError: an emulator can choke on such input (ministack leaves a
    10,000-deep one RUNNING for ever, cloud/EMULATORS.md), and on AWS it would only fail later."""
    name = f"{name_prefix}-{uuid.uuid4().hex}"[:80]
    if isinstance(event, dict) and "id" not in event:
        # The functions' logs and metrics carry `id` as the correlation id (lambdas/logs.py): the name.
        event = {**event, "id": name}
    if (depth := json_depth(event)) > MAX_EVENT_DEPTH:
        raise InvalidEventError(
            f"the input nests {depth}+ levels deep, more than the workflow's limit of {MAX_EVENT_DEPTH}: "
            "send a flat object with s3_bucket and s3_key"
        )
    body = json.dumps(event)
    if len(body.encode()) > MAX_EVENT_BYTES:
        raise InvalidEventError(
            f"the input is {len(body.encode())} bytes, more than the workflow's limit of {MAX_EVENT_BYTES}: "
            "upload the image to the bucket and send its s3_bucket and s3_key instead of its bytes"
        )
    response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=body)
    return response["executionArn"]


def wait_for_execution(
    sfn, execution_arn: str, timeout_s: float = 120.0, poll_s: float = 0.1, max_poll_s: float = 2.0
) -> ExecutionResult:
    """Poll until the execution ends, every `poll_s` growing to `max_poll_s` seconds. At the deadline
    the execution is stopped, so none is left RUNNING."""
    try:
        described = poll(
            lambda: sfn.describe_execution(executionArn=execution_arn),
            lambda described: described["status"] in TERMINAL_STATUSES,
            timeout_s=timeout_s,
            interval_s=poll_s,
            max_interval_s=max_poll_s,
        )
    except PollTimeoutError:
        try:
            sfn.stop_execution(
                executionArn=execution_arn, error="ExecutionTimeoutError", cause=f"not done in {timeout_s} s"
            )
        except ClientError:
            # It may have ended between the two calls: then it is not ours to report as stuck.
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] in TERMINAL_STATUSES:
                return with_rejected_scores(sfn, _result(described))
            raise
        raise ExecutionTimeoutError(f"{execution_arn} was still running after {timeout_s} s; stopped it") from None
    return with_rejected_scores(sfn, _result(described))


def trigger_prefix(outputs: dict[str, str]) -> str | None:
    """The prefix whose uploads start an execution, or None when the stack has no upload trigger."""
    return outputs.get("UploadTriggerPrefix") or None


class TriggeredExecutions:
    """The executions the upload trigger started, found by their input's s3_bucket and s3_key. Each is
    claimed once, so the same image uploaded twice is followed through its two executions. Thread-safe:
    the threads of a batch share one listing, refreshed at most every `refresh_s` seconds."""

    def __init__(self, sfn, state_machine_arn: str, refresh_s: float = 0.2):
        self._sfn = sfn
        self._machine = state_machine_arn
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str | None, str | None, datetime]] = {}  # arn -> bucket, key, start
        self._claimed: set[str] = set()
        self._refreshed_at = float("-inf")

    def refresh(self, since: datetime) -> None:
        """List the executions started since `since` and read the input of those not seen before.
        Listings are newest first (AWS documents it): a page wholly older than `since` ends the walk."""
        with self._lock:
            if time.monotonic() - self._refreshed_at < self._refresh_s:
                return
            cutoff = since - TRIGGER_CLOCK_SLACK
            for page in self._sfn.get_paginator("list_executions").paginate(stateMachineArn=self._machine):
                executions = page["executions"]
                for execution in executions:
                    arn = execution["executionArn"]
                    if arn not in self._seen and execution["startDate"] >= cutoff:
                        self._seen[arn] = (*_bucket_and_key(self._sfn, arn), execution["startDate"])
                if all(e["startDate"] < cutoff for e in executions):
                    break
            self._refreshed_at = time.monotonic()

    def claim(self, bucket: str, key: str, since: datetime) -> str | None:
        """The earliest unclaimed execution on s3://bucket/key started since `since`, now claimed."""
        cutoff = since - TRIGGER_CLOCK_SLACK
        with self._lock:
            found = sorted(
                (start, arn)
                for arn, (b, k, start) in self._seen.items()
                if (b, k) == (bucket, key) and start >= cutoff and arn not in self._claimed
            )
            if not found:
                return None
            self._claimed.add(found[0][1])
            return found[0][1]

    def claim_all(self, bucket: str, keys: set[str], since: datetime) -> list[str]:
        """Claim every unclaimed execution on one of `keys` in `bucket` started since `since`."""
        self.refresh(since)
        cutoff = since - TRIGGER_CLOCK_SLACK
        with self._lock:
            found = [
                arn
                for arn, (b, k, start) in self._seen.items()
                if b == bucket and k in keys and start >= cutoff and arn not in self._claimed
            ]
            self._claimed.update(found)
        return found

    def wait_for(self, bucket: str, key: str, since: datetime, timeout_s: float = TRIGGER_TIMEOUT_S) -> str:
        """The execution the upload of s3://bucket/key at `since` started; TriggerNotFiredError after
        `timeout_s` seconds without one."""

        def look() -> str | None:
            self.refresh(since)
            return self.claim(bucket, key, since)

        try:
            return poll(look, bool, timeout_s=timeout_s, interval_s=self._refresh_s)
        except PollTimeoutError:
            raise TriggerNotFiredError(
                f"no execution of {self._machine} started on s3://{bucket}/{key} within {timeout_s:g} s of "
                "its upload: the stack's upload trigger (UploadTriggerRuleName in its outputs) did not fire. "
                "Check that the rule is ENABLED and the bucket sends events to EventBridge, or run with "
                "--start-execution"
            ) from None


def parse_json(text: str | None) -> object:
    """A history event's JSON text (a state's input or output, an error's cause) as a value; text that is not
    JSON as it is; None as None."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def event_details(event: dict) -> dict:
    """A history event's `...EventDetails` object (each event type names its own), or {}."""
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def _bucket_and_key(sfn, execution_arn: str) -> tuple[str | None, str | None]:
    try:
        event = json.loads(sfn.describe_execution(executionArn=execution_arn).get("input") or "null")
    except (ValueError, RecursionError):  # not JSON, or nested past what json parses: not an upload's input
        return None, None
    return (event.get("s3_bucket"), event.get("s3_key")) if isinstance(event, dict) else (None, None)


def triggered_key(image: bytes, prefix: str) -> str:
    """The image's content address plus a per-upload suffix: each upload starts its own execution, and
    the key names that one alone, whichever client (or thread) uploads the same image at the same time."""
    stem, dot, extension = image_key(image, prefix).rpartition(".")
    return f"{stem}-{uuid.uuid4().hex[:12]}{dot}{extension}"


def upload_and_follow(
    s3,
    sfn,
    outputs: dict[str, str],
    image: bytes,
    finder: TriggeredExecutions | None = None,
    before_upload=None,
) -> tuple[str, str]:
    """Upload `image` under the stack's trigger prefix and return (key, ARN of the execution it started)."""
    bucket = outputs["ImageBucketName"]
    key = triggered_key(image, trigger_prefix(outputs) or UPLOAD_TRIGGER_PREFIX)
    if before_upload:
        before_upload(key)  # e.g. a batch noting the key, to find the execution if it is interrupted now
    since = datetime.now(UTC)
    s3.put_object(Bucket=bucket, Key=key, Body=image, ContentType=image_content_type(image))
    finder = finder or TriggeredExecutions(sfn, outputs["StateMachineArn"])
    return key, finder.wait_for(bucket, key, since)


def classified_scores(sfn, execution_arn: str) -> list[float] | None:
    """The scores the classifier added, read from the execution's history: a rejected execution has no
    output, but its Classify Image state has one."""
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    for page in pages:
        for event in page["events"]:
            details = event.get("stateExitedEventDetails")
            if details and details.get("name") == CLASSIFY_STATE:
                return json.loads(details.get("output") or "{}").get("inferences")
    return None


def with_rejected_scores(sfn, result: ExecutionResult) -> ExecutionResult:
    """A rejected (low-confidence) result with the scores it was rejected on; others as they are."""
    if result.error_name != LowConfidenceError.__name__:
        return result
    return replace(result, classified=classified_scores(sfn, result.execution_arn))


def _result(described: dict) -> ExecutionResult:
    # Only a succeeded execution has an output (ministack also fills it in on failure).
    output = described.get("output") if described["status"] == "SUCCEEDED" else None
    return ExecutionResult(
        execution_arn=described["executionArn"],
        status=described["status"],
        output=json.loads(output) if output else None,
        error=described.get("error"),
        cause=described.get("cause"),
        start_date=described["startDate"],
        stop_date=described.get("stopDate") or described["startDate"],
    )


def run_workflow(
    event: ImageEvent | dict, outputs: dict[str, str], aws: AwsTarget, timeout_s: float = 120.0
) -> ExecutionResult:
    """Run one execution of the deployed state machine on `event` and wait for its result."""
    sfn = aws.client("stepfunctions")
    arn = start_execution(sfn, outputs["StateMachineArn"], dict(event))
    return wait_for_execution(sfn, arn, timeout_s)


def run_image(
    image: bytes | Path,
    outputs: dict[str, str],
    aws: AwsTarget,
    *,
    timeout_s: float = 120.0,
    start_execution: bool = False,
) -> ExecutionResult:
    """Upload a PNG or JPEG to the stack's image bucket and run the workflow on it: where the stack has the
    upload trigger, by following the execution the upload started; otherwise (or with
    `start_execution`), by uploading outside the trigger prefix and calling StartExecution."""
    data = Path(image).read_bytes() if isinstance(image, Path) else image
    s3 = aws.client("s3")
    if trigger_prefix(outputs) and not start_execution:
        sfn = aws.client("stepfunctions")
        _, arn = upload_and_follow(s3, sfn, outputs, data)
        return wait_for_execution(sfn, arn, timeout_s)
    bucket = outputs["ImageBucketName"]
    key = upload_image(s3, bucket, data)
    return run_workflow({"s3_bucket": bucket, "s3_key": key}, outputs, aws, timeout_s)
