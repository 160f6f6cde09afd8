"""Classify every image under an S3 prefix with the batch state machine (a Distributed Map,
statemachine/batch_classification.asl.json): start it, follow its Map Run with a progress bar, and read
the summary it wrote to S3."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError
from tqdm import tqdm

from cloud.aws import AwsTarget
from cloud.polling import PollTimeoutError, poll
from lambdas.summarize_batch import SUMMARY_PREFIX, summary_key
from local_model.progress import progress_bar
from scones.workflow.execution import TERMINAL_STATUSES, WorkflowRunError

DEFAULT_TIMEOUT_S = 3600.0
POLL_INTERVAL_S = 0.5


class PrefixBatchError(WorkflowRunError):
    """The batch could not be started, did not finish in time, or left no summary."""


class InvalidPrefixError(PrefixBatchError):
    """The s3:// argument does not name a bucket and a prefix the batch may list."""


class EmptyPrefixError(InvalidPrefixError):
    """No object is under the prefix: nothing to classify (most often a mistyped prefix)."""


class BatchTimeoutError(PrefixBatchError):
    """The batch was still running at the deadline (it has been stopped)."""


@dataclass(frozen=True)
class PrefixBatchResult:
    execution_arn: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or ABORTED
    error: str | None
    cause: str | None
    summary: dict | None  # as written to S3; None if the execution failed before the summary step
    summary_location: str
    seconds: float

    def to_dict(self) -> dict:
        return {
            "execution_arn": self.execution_arn,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "seconds": round(self.seconds, 3),
            "summary_location": self.summary_location,
            "summary": self.summary,
        }


def is_prefix_argument(argument: str) -> bool:
    """`s3://bucket/prefix/` (a trailing slash) names a prefix; `s3://bucket/key` one image."""
    return argument.startswith("s3://") and argument.endswith("/")


def parse_prefix(argument: str, prefix: str | None = None) -> tuple[str, str]:
    """(bucket, prefix) from `s3://bucket/prefix/`, or from `s3://bucket` plus an explicit prefix."""
    if not argument.startswith("s3://"):
        raise InvalidPrefixError(f"{argument} is not s3://BUCKET/PREFIX/")
    bucket, _, path = argument[len("s3://") :].partition("/")
    if prefix is not None:
        if path:
            raise InvalidPrefixError(f"give the prefix once: {argument} already has {path!r}, and --prefix {prefix!r}")
        path = prefix
    if not bucket:
        raise InvalidPrefixError(f"{argument} names no bucket")
    if not path.strip("/"):
        raise InvalidPrefixError(
            f"{argument}: give a prefix (s3://{bucket}/images/): the bucket's root also holds the batch "
            f"summaries ({SUMMARY_PREFIX}) and data capture, which are not images"
        )
    if path.startswith(SUMMARY_PREFIX) or SUMMARY_PREFIX.startswith(path):
        raise InvalidPrefixError(f"{argument}: {SUMMARY_PREFIX} holds the batch summaries, not images")
    return bucket, path


def run_prefix_batch(
    aws: AwsTarget,
    outputs: dict[str, str],
    bucket: str,
    prefix: str,
    *,
    tolerated_failure_percentage: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    show_progress: bool = True,
    on_start: Callable[[str], None] | None = None,
) -> PrefixBatchResult:
    """Run the stack's batch state machine over s3://bucket/prefix and wait (at most `timeout_s`, then
    stop it) for its end; the summary is read back from S3. The defaults live in the state machine."""
    if "BatchStateMachineArn" not in outputs:
        raise PrefixBatchError("the stack has no BatchStateMachineArn output: deploy it again (`scones deploy`)")
    sfn, s3 = aws.client("stepfunctions"), aws.client("s3")
    check_prefix_has_objects(s3, bucket, prefix)
    execution_input: dict = {"bucket": bucket, "prefix": prefix}
    if tolerated_failure_percentage is not None:
        if not 0 <= tolerated_failure_percentage <= 100:
            raise PrefixBatchError(f"tolerated failure percentage {tolerated_failure_percentage} is outside [0, 100]")
        execution_input["tolerated_failure_percentage"] = tolerated_failure_percentage
    name = f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    arn = sfn.start_execution(
        stateMachineArn=outputs["BatchStateMachineArn"], name=name, input=json.dumps(execution_input)
    )["executionArn"]
    if on_start:
        on_start(arn)
    described = follow(sfn, arn, time.monotonic() + timeout_s, show_progress)
    location = f"s3://{bucket}/{summary_key(name)}"
    return PrefixBatchResult(
        execution_arn=arn,
        status=described["status"],
        error=described.get("error"),
        cause=described.get("cause"),
        summary=read_summary(s3, bucket, summary_key(name)),
        summary_location=location,
        seconds=(described["stopDate"] - described["startDate"]).total_seconds(),
    )


def check_prefix_has_objects(s3, bucket: str, prefix: str) -> None:
    """Refuse a missing bucket or an empty prefix before starting anything. (The state machine itself
    summarizes an empty prefix to zeros on AWS and ministack; LocalStack fails it: cloud/EMULATORS.md.)"""
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise InvalidPrefixError(f"bucket {bucket!r} does not exist") from e
        raise
    if not listed.get("KeyCount"):
        raise EmptyPrefixError(f"nothing under s3://{bucket}/{prefix}: check the prefix (it is case-sensitive)")


def follow(sfn, arn: str, deadline: float, show_progress: bool) -> dict:
    """Poll the execution until it ends, showing its Map Run's item counts; stop it at the deadline."""
    with progress_bar(total=None, unit="image", desc="batch", disable=not show_progress) as bar:

        def read() -> dict:
            described = sfn.describe_execution(executionArn=arn)
            update_bar(sfn, arn, bar)
            return described

        try:
            return poll(
                read,
                lambda described: described["status"] in TERMINAL_STATUSES,
                timeout_s=deadline - time.monotonic(),
                interval_s=POLL_INTERVAL_S,
            )
        except PollTimeoutError:
            sfn.stop_execution(executionArn=arn, error="BatchTimeoutError", cause="the client's deadline passed")
            raise BatchTimeoutError(f"{arn} was still running at the deadline; it has been stopped") from None


def update_bar(sfn, arn: str, bar: tqdm) -> None:
    runs = sfn.list_map_runs(executionArn=arn).get("mapRuns", [])
    if not runs:
        return
    counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
    done = counts.get("succeeded", 0) + counts.get("failed", 0) + counts.get("aborted", 0) + counts.get("timedOut", 0)
    if bar.total != counts.get("total"):
        bar.total = counts.get("total")
    bar.n = done
    bar.refresh()


def read_summary(s3, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def format_summary(result: PrefixBatchResult) -> str:
    lines = [f"batch {result.status} in {result.seconds:.1f} s ({result.execution_arn})"]
    if result.error:
        lines.append(f"  error: {result.error}: {result.cause or ''}"[:600])
    summary = result.summary
    if summary is None:
        lines.append("  no summary was written (the execution ended before its summary step)")
        return "\n".join(lines)
    totals = summary["totals"]
    lines.append(
        f"  {totals['items']} objects under s3://{summary['bucket']}/{summary['prefix']}: "
        f"{totals['routed']} routed, {totals['rejected']} rejected (low confidence), {totals['failed']} failed"
    )
    lines.append(f"  {'class':<12}{'routed':>8}{'rejected':>10}{'failed':>8}")
    for name, counts in summary["classes"].items():
        lines.append(f"  {name:<12}{counts['routed']:>8}{counts['rejected']:>10}{counts['failed']:>8}")
    lines.append(f"  {'(no class)':<12}{'':>8}{'':>10}{summary['unclassified_failed']:>8}")
    for item in summary["failed_items"][:10]:
        lines.append(f"  failed: {item['s3_key']}: {item['error']}")
    lines.append(f"  summary: {result.summary_location}")
    return "\n".join(lines)
