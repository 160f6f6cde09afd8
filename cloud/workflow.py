"""Run the deployed workflow: upload an image to the stack's bucket, start an execution, wait for it
with a deadline and read its result, named error included."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cloud.deploy import DEFAULT_STACK_NAME, make_client, stack_outputs
from lambdas.contract import (
    CLASSES,
    MAX_EVENT_BYTES,
    MAX_EVENT_DEPTH,
    ImageEvent,
    InvalidEventError,
    WorkflowError,
    image_content_type,
    json_depth,
)

# Error names under which an emulator reports a Lambda failure when it drops the exception's
# name (ministack: Runtime.HandlerError, see cloud/EMULATORS.md). AWS reports the name itself.
UNNAMED_LAMBDA_ERRORS = frozenset({"Runtime.HandlerError", "Lambda.Unknown"})
_NAMED_MESSAGE = re.compile(r"^([A-Z][A-Za-z0-9]*Error): ")
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg"}
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class WorkflowRunError(RuntimeError):
    """An execution could not be started or did not finish in time."""


class ExecutionTimeoutError(WorkflowRunError):
    """The execution was still running at the deadline (it has been stopped)."""


@dataclass(frozen=True)
class ExecutionResult:
    execution_arn: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or ABORTED
    output: dict | None
    error: str | None  # as Step Functions reports it
    cause: str | None
    start_date: datetime
    stop_date: datetime

    @property
    def seconds(self) -> float:
        """StartExecution to the terminal state, by Step Functions' own clock."""
        return (self.stop_date - self.start_date).total_seconds()

    @property
    def error_message(self) -> str:
        """The failed function's message when the cause is a Lambda error payload, else the cause."""
        try:
            payload = json.loads(self.cause or "")
        except json.JSONDecodeError:
            return self.cause or ""
        return payload.get("errorMessage", self.cause) if isinstance(payload, dict) else self.cause

    @property
    def error_name(self) -> str | None:
        """The named error (LowConfidenceError, ...), also from emulators that report every Lambda
        failure as Runtime.HandlerError: the workflow's messages start with their error's name."""
        if self.error not in UNNAMED_LAMBDA_ERRORS:
            return self.error
        match = _NAMED_MESSAGE.match(self.error_message)
        return match.group(1) if match else self.error

    @property
    def inferences(self) -> list[float] | None:
        return (self.output or {}).get("inferences")

    @property
    def label(self) -> str | None:
        """The class the workflow routed the image as; None unless it succeeded."""
        if self.status != "SUCCEEDED" or not self.inferences:
            return None
        return CLASSES[max(range(len(CLASSES)), key=self.inferences.__getitem__)]

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


def image_key(image: bytes, prefix: str = "images/") -> str:
    """Content-addressed key: the same image is stored once."""
    extension = _EXTENSIONS[image_content_type(image)]
    return f"{prefix}{hashlib.sha256(image).hexdigest()}{extension}"


def upload_image(s3, bucket: str, image: bytes, key: str | None = None) -> str:
    key = key or image_key(image)
    s3.put_object(Bucket=bucket, Key=key, Body=image, ContentType=image_content_type(image))
    return key


def start_execution(sfn, state_machine_arn: str, event: dict, name_prefix: str = "run") -> str:
    """Start one execution with `event` as its input. An input the workflow would refuse for its shape
    (nested deeper than MAX_EVENT_DEPTH, larger than MAX_EVENT_BYTES) is refused here, before
    StartExecution, with InvalidEventError: an emulator can choke on such input (ministack leaves a
    10,000-deep one RUNNING for ever, cloud/EMULATORS.md), and on AWS it would only fail later."""
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
    name = f"{name_prefix}-{uuid.uuid4().hex}"[:80]
    response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=body)
    return response["executionArn"]


def wait_for_execution(
    sfn, execution_arn: str, timeout_s: float = 120.0, poll_s: float = 0.1, max_poll_s: float = 2.0
) -> ExecutionResult:
    """Poll until the execution ends, every `poll_s` growing to `max_poll_s` seconds. At the deadline
    the execution is stopped, so none is left RUNNING."""
    deadline = time.monotonic() + timeout_s
    interval = poll_s
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL_STATUSES:
            return _result(described)
        if time.monotonic() + interval > deadline:
            try:
                sfn.stop_execution(
                    executionArn=execution_arn, error="ExecutionTimeoutError", cause=f"not done in {timeout_s} s"
                )
            except ClientError:
                # It may have ended between the two calls: then it is not ours to report as stuck.
                described = sfn.describe_execution(executionArn=execution_arn)
                if described["status"] in TERMINAL_STATUSES:
                    return _result(described)
                raise
            raise ExecutionTimeoutError(f"{execution_arn} was still running after {timeout_s} s; stopped it")
        time.sleep(interval)
        interval = min(interval * 1.5, max_poll_s)


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
    event: ImageEvent | dict,
    outputs: dict[str, str],
    *,
    session: boto3.Session | None = None,
    timeout_s: float = 120.0,
) -> ExecutionResult:
    """Run one execution of the deployed state machine on `event` and wait for its result."""
    sfn = make_client(session or boto3.Session(), "stepfunctions")
    arn = start_execution(sfn, outputs["StateMachineArn"], dict(event))
    return wait_for_execution(sfn, arn, timeout_s)


def run_image(
    image: bytes | Path,
    outputs: dict[str, str] | None = None,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    session: boto3.Session | None = None,
    timeout_s: float = 120.0,
) -> ExecutionResult:
    """Upload a PNG or JPEG to the stack's image bucket and run the workflow on it."""
    session = session or boto3.Session()
    outputs = outputs or stack_outputs(stack_name, session=session)
    data = Path(image).read_bytes() if isinstance(image, Path) else image
    bucket = outputs["ImageBucketName"]
    key = upload_image(make_client(session, "s3"), bucket, data)
    return run_workflow({"s3_bucket": bucket, "s3_key": key}, outputs, session=session, timeout_s=timeout_s)


def main(argv: list[str] | None = None) -> int:
    """`python -m cloud.workflow IMAGE...`: run the deployed workflow on local image files."""
    parser = argparse.ArgumentParser(
        prog="python -m cloud.workflow",
        description="Upload images to the stack's bucket and run the workflow on each; print the results as JSON. "
        "The target comes from the environment (AWS_ENDPOINT_URL for an emulator).",
    )
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files")
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each execution")
    args = parser.parse_args(argv)
    session = boto3.Session()
    try:
        outputs = stack_outputs(args.stack_name, session=session)
    except (BotoCoreError, ClientError) as e:
        print(f"error: cannot read stack {args.stack_name}: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        try:
            summary = run_image(path, outputs, session=session, timeout_s=args.timeout).summary()
        except (OSError, WorkflowError, WorkflowRunError) as e:
            summary = {"status": "NOT_RUN", "error": type(e).__name__, "message": str(e)}
        failed += summary["status"] != "SUCCEEDED"
        print(json.dumps({"image": str(path), **summary}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
