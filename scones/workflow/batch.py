"""Many images through the deployed workflow (or straight to the model endpoint), a few at a time, with
progress bars: upload to the stack's bucket and follow the execution the upload trigger started (or, where
the stack has no trigger or when asked, start one per image), and wait for each with a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from cloud.aws import AwsTarget
from cloud.polling import PollTimeoutError, poll
from lambdas.classify_image import invoke_endpoint
from lambdas.contract import LOW_CONFIDENCE_ERROR, Outcome, WorkflowError, predicted_class
from local_model.progress import progress_bar
from scones.workflow.execution import (
    DIRECT_PREFIX,
    TERMINAL_STATUSES,
    ExecutionResult,
    TriggeredExecutions,
    WorkflowRunError,
    start_execution,
    trigger_prefix,
    upload_and_follow,
    upload_image,
    wait_for_execution,
)

DEFAULT_CONCURRENCY = 4  # executions in flight at once: enough to exercise concurrency on two cores
EXECUTION_TIMEOUT_S = 120.0  # per execution: cold starts on busy cores take seconds, a warm run about one
INTERRUPTED_ERROR = "BatchInterruptedError"  # the Error of an execution stopped because its batch was
POLL_S, MAX_POLL_S = 0.1, 0.5  # how often a running execution is described, at first and at most
STOP_CONFIRM_S = 5.0  # how long an interrupted batch waits to see its stopped executions ABORTED
INTERRUPTED_CAUSE = "the batch that started this execution was interrupted (Ctrl-C) or failed"

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatchInterruptedError(WorkflowRunError):
    """The batch was interrupted before (or as) this image's execution started."""


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image: routed, rejected as low confidence, or failed (with the error)."""

    path: Path
    label: str  # the true class, from the image's folder
    scores: list[float] | None  # [p_bicycle, p_motorcycle] as the endpoint answered, rejected images included
    outcome: Outcome
    seconds: float | None  # the execution's (or the endpoint call's) latency
    error: str | None = None  # the named error of a failed image
    message: str | None = None
    execution_arn: str | None = None

    @property
    def predicted(self) -> str | None:
        return predicted_class(self.scores)


def progress_map(function: Callable[[T], R], items: list[T], concurrency: int, desc: str, unit: str) -> list[R]:
    """`function` over `items` with `concurrency` threads and a progress bar; results in input order."""
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    with progress_bar(total=len(items), desc=desc, unit=unit) as bar:
        try:
            futures = [pool.submit(function, item) for item in items]
            # The bar is drawn by this thread only: a worker that drew it would take tqdm's lock, which a Ctrl-C
            # arriving while this thread held it could leave taken, and the interpreter's exit, which joins the
            # workers, would then wait for ever.
            for future in as_completed(futures):
                future.result()  # the first failure, as soon as it happens
                bar.update()
            results = [future.result() for future in futures]
        except BaseException:
            # Ctrl-C or a failed call: start nothing more, and do not wait for what is in flight.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    pool.shutdown()
    return results


def upload_images(
    s3, bucket: str, paths: Iterable[Path], concurrency: int = 8, prefix: str = DIRECT_PREFIX
) -> dict[Path, str]:
    """Put each image into `bucket` under its content-addressed key (by default outside the trigger
    prefix: the batch starts the executions itself); return the key of each path."""
    paths = list(paths)

    def upload(path: Path) -> str:
        return upload_image(s3, bucket, path.read_bytes(), prefix=prefix)

    keys = progress_map(upload, paths, concurrency, "upload", "image")
    return dict(zip(paths, keys, strict=True))


def outcome_of(result: ExecutionResult, path: Path, label: str) -> ImageOutcome:
    if result.status == "SUCCEEDED":
        arn = result.execution_arn
        return ImageOutcome(path, label, result.inferences, Outcome.ROUTED, result.seconds, execution_arn=arn)
    rejected = result.error_name == LOW_CONFIDENCE_ERROR
    return ImageOutcome(
        path,
        label,
        result.inferences if rejected else None,
        Outcome.REJECTED if rejected else Outcome.FAILED,
        result.seconds,
        error=result.error_name or result.status,
        message=result.error_message or None,
        execution_arn=result.execution_arn,
    )


class StartedExecutions:
    """The executions one batch started, so that an interrupted batch can stop them.

    A worker records its execution under the lock and learns there whether the batch is being stopped; the
    sweep sets that flag under the same lock. So every execution is either in the sweep's list or stopped by
    its own worker right after StartExecution returned: none escapes to stay RUNNING.
    """

    def __init__(self, sfn):
        self._sfn = sfn
        self._lock = threading.Lock()
        self._arns: list[str] = []
        self._uploads: list[str] = []  # keys uploaded under the trigger prefix, one per execution they start
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def arns(self) -> list[str]:
        with self._lock:
            return list(self._arns)

    @property
    def uploads(self) -> list[str]:
        with self._lock:
            return list(self._uploads)

    def uploaded(self, key: str) -> None:
        with self._lock:
            self._uploads.append(key)

    def record(self, arn: str) -> bool:
        """Remember `arn`; False (after stopping it) when the batch is already being stopped."""
        with self._lock:
            self._arns.append(arn)
            stopping = self._stopping
        if stopping:
            self._stop(arn)
        return not stopping

    def stop_all(self) -> list[str]:
        """Stop every recorded execution that is not terminal yet; the ARNs of those it stopped."""
        with self._lock:
            self._stopping = True
            arns = list(self._arns)
        return [arn for arn in arns if self._stop(arn)]

    def still_running(self, arns: list[str], within_s: float) -> list[str]:
        """Those of `arns` that do not report a terminal status within `within_s` seconds."""
        remaining = list(arns)

        def running() -> list[str]:
            remaining[:] = [arn for arn in remaining if not self._terminal(arn)]
            return list(remaining)

        try:
            return poll(running, lambda left: not left, timeout_s=within_s, interval_s=POLL_S)
        except PollTimeoutError as e:
            return e.last

    def _terminal(self, arn: str) -> bool:
        try:
            return self._sfn.describe_execution(executionArn=arn)["status"] in TERMINAL_STATUSES
        except (BotoCoreError, ClientError):
            return False

    def _stop(self, arn: str) -> bool:
        try:
            if self._sfn.describe_execution(executionArn=arn)["status"] in TERMINAL_STATUSES:
                return False
            self._sfn.stop_execution(executionArn=arn, error=INTERRUPTED_ERROR, cause=INTERRUPTED_CAUSE)
        except (BotoCoreError, ClientError) as e:
            # It may have ended between the two calls; anything else is reported, and the sweep goes on.
            logger.warning("could not stop %s: %s", arn, e)
            return False
        return True


def run_workflow_batch(
    aws: AwsTarget,
    outputs: dict[str, str],
    images: list[tuple[Path, str]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = EXECUTION_TIMEOUT_S,
    name_prefix: str = "scones",
    start_executions: bool = False,
) -> list[ImageOutcome]:
    """Run one execution per image of `images` ((path, true class) pairs), `concurrency` at a time. Where
    the stack has the upload trigger (and not `start_executions`), each image is uploaded under its prefix
    and the execution the upload started is followed; otherwise the images are uploaded outside it and
    each execution is started here, named `<name_prefix>-<uuid>`. Every execution ends terminal: one still
    running at its deadline is stopped and counted failed, and on Ctrl-C (or any other exception) every
    execution of this batch still running is stopped (ABORTED) before the exception goes on."""
    s3 = aws.client("s3")
    sfn = aws.client("stepfunctions")
    bucket = outputs["ImageBucketName"]
    triggered = bool(trigger_prefix(outputs)) and not start_executions
    keys = {} if triggered else upload_images(s3, bucket, [path for path, _ in images])
    started = StartedExecutions(sfn)
    finder = TriggeredExecutions(sfn, outputs["StateMachineArn"])

    def begin(path: Path) -> str:
        if triggered:
            # The upload is the start: noted first, so that the sweep finds its execution if Ctrl-C comes now.
            _, arn = upload_and_follow(s3, sfn, outputs, path.read_bytes(), finder, started.uploaded)
            return arn
        event = {"s3_bucket": bucket, "s3_key": keys[path]}
        return start_execution(sfn, outputs["StateMachineArn"], event, name_prefix)

    def run(item: tuple[Path, str]) -> ImageOutcome:
        path, label = item
        arn = None
        try:
            if started.stopping:
                raise BatchInterruptedError("the batch was interrupted before this image's execution started")
            arn = begin(path)
            if not started.record(arn):
                raise BatchInterruptedError(f"the batch was interrupted as {arn} started; stopped it")
            result = wait_unless_stopping(sfn, arn, timeout_s, started)
        except WorkflowRunError as e:
            return ImageOutcome(
                path, label, None, Outcome.FAILED, None, error=type(e).__name__, message=str(e), execution_arn=arn
            )
        return outcome_of(result, path, label)

    batch_started = datetime.now(UTC)
    try:
        return progress_map(run, images, concurrency, "workflow", "execution")
    except BaseException:
        if triggered:
            claim_unfollowed_executions(started, finder, bucket, batch_started)
        stopped = started.stop_all()
        if stopped:
            print(f"stopped {len(stopped)} running executions of this batch", file=sys.stderr, flush=True)
            lagging = started.still_running(stopped, STOP_CONFIRM_S)
            if lagging:
                # LocalStack keeps a stopped execution RUNNING until its Lambda task returns (AWS does not).
                print(
                    f"{len(lagging)} of them still report RUNNING: their task is in flight, and they end ABORTED "
                    "when it returns",
                    file=sys.stderr,
                    flush=True,
                )
        raise


def claim_unfollowed_executions(started: StartedExecutions, finder: TriggeredExecutions, bucket: str, since) -> None:
    """Record the executions the batch's uploads started that no worker has claimed yet (Ctrl-C came
    between an upload and its execution being listed), waiting up to STOP_CONFIRM_S for them to appear."""

    def missing() -> int:
        for arn in finder.claim_all(bucket, set(started.uploads), since):
            started.record(arn)
        return len(started.uploads) - len(started.arns)

    try:
        poll(missing, lambda count: count <= 0, timeout_s=STOP_CONFIRM_S, interval_s=POLL_S)
    except PollTimeoutError as e:
        print(
            f"{e.last} uploads of this batch started no execution that could be found within {STOP_CONFIRM_S:g} s",
            file=sys.stderr,
            flush=True,
        )


def wait_unless_stopping(sfn, arn: str, timeout_s: float, started: StartedExecutions) -> ExecutionResult:
    """scones.workflow.execution.wait_for_execution, giving up as soon as the batch is being stopped (then the sweep
    stops the execution), so an interrupted batch does not wait for its executions to end."""
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(PollTimeoutError):  # past the deadline: wait_for_execution stops it and raises
        poll(
            lambda: started.stopping or sfn.describe_execution(executionArn=arn)["status"] in TERMINAL_STATUSES,
            bool,
            timeout_s=timeout_s,
            interval_s=POLL_S,
            max_interval_s=MAX_POLL_S,
        )
    if started.stopping:
        raise BatchInterruptedError(f"the batch was interrupted while {arn} ran; stopped it")
    return wait_for_execution(sfn, arn, max(0.0, deadline - time.monotonic()))


def run_endpoint_batch(
    runtime, endpoint_name: str, images: list[tuple[Path, str]], threshold: float, concurrency: int
) -> list[ImageOutcome]:
    """Send each image straight to the model endpoint (no workflow) and decide routed/rejected by the
    same threshold the workflow's filter applies."""

    def score(item: tuple[Path, str]) -> ImageOutcome:
        path, label = item
        started = time.perf_counter()
        try:
            scores = invoke_endpoint(runtime, endpoint_name, path.read_bytes())
        except WorkflowError as e:
            return ImageOutcome(path, label, None, Outcome.FAILED, None, error=type(e).__name__, message=str(e))
        seconds = time.perf_counter() - started
        outcome = Outcome.ROUTED if max(scores) >= threshold else Outcome.REJECTED
        return ImageOutcome(path, label, scores, outcome, seconds)

    return progress_map(score, images, concurrency, "endpoint", "image")
