"""Many images through the deployed workflow (or straight to the model endpoint), a few at a time, with
progress bars: upload to the stack's bucket, start one execution per image, wait for each with a deadline.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from cloud.deploy import make_client
from cloud.workflow import ExecutionResult, WorkflowRunError, image_key, start_execution, wait_for_execution
from lambdas.classify_image import invoke_endpoint
from lambdas.contract import CLASSES, WorkflowError

DEFAULT_CONCURRENCY = 4  # executions in flight at once: enough to exercise concurrency on two cores
EXECUTION_TIMEOUT_S = 120.0  # per execution: cold starts on busy cores take seconds, a warm run about one
CLASSIFY_STATE = "Classify Image"  # the state whose output holds the scores (statemachine/)
LOW_CONFIDENCE = "LowConfidenceError"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image: routed, rejected as low confidence, or failed (with the error)."""

    path: Path
    label: str  # the true class, from the image's folder
    scores: list[float] | None  # [p_bicycle, p_motorcycle] as the endpoint answered, rejected images included
    outcome: str  # "routed", "rejected" or "failed"
    seconds: float | None  # the execution's (or the endpoint call's) latency
    error: str | None = None  # the named error of a failed image
    message: str | None = None
    execution_arn: str | None = None

    @property
    def predicted(self) -> str | None:
        if not self.scores:
            return None
        return CLASSES[max(range(len(CLASSES)), key=self.scores.__getitem__)]


def progress_map(function: Callable[[T], R], items: list[T], concurrency: int, desc: str, unit: str) -> list[R]:
    """`function` over `items` with `concurrency` threads and a progress bar; results in input order."""
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    with tqdm(total=len(items), desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            futures = [pool.submit(function, item) for item in items]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            results = [future.result() for future in futures]
        except BaseException:
            # Ctrl-C or a failed call: start nothing more, and do not wait for what is in flight.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    pool.shutdown()
    return results


def upload_images(s3, bucket: str, paths: Iterable[Path], concurrency: int = 8) -> dict[Path, str]:
    """Put each image into `bucket` under its content-addressed key; return the key of each path."""
    paths = list(paths)

    def upload(path: Path) -> str:
        body = path.read_bytes()
        key = image_key(body)
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type_of(key))
        return key

    keys = progress_map(upload, paths, concurrency, "upload", "image")
    return dict(zip(paths, keys, strict=True))


def content_type_of(key: str) -> str:
    return "image/png" if key.endswith(".png") else "image/jpeg"


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


def outcome_of(result: ExecutionResult, path: Path, label: str, sfn) -> ImageOutcome:
    if result.status == "SUCCEEDED":
        arn = result.execution_arn
        return ImageOutcome(path, label, result.inferences, "routed", result.seconds, execution_arn=arn)
    rejected = result.error_name == LOW_CONFIDENCE
    return ImageOutcome(
        path,
        label,
        classified_scores(sfn, result.execution_arn) if rejected else None,
        "rejected" if rejected else "failed",
        result.seconds,
        error=result.error_name or result.status,
        message=result.error_message or None,
        execution_arn=result.execution_arn,
    )


def run_workflow_batch(
    session,
    outputs: dict[str, str],
    images: list[tuple[Path, str]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = EXECUTION_TIMEOUT_S,
) -> list[ImageOutcome]:
    """Upload `images` ((path, true class) pairs) and run one execution per image, `concurrency` at a
    time. Every execution ends terminal: one still running at its deadline is stopped and counted failed."""
    s3 = make_client(session, "s3")
    sfn = make_client(session, "stepfunctions")
    bucket = outputs["ImageBucketName"]
    keys = upload_images(s3, bucket, [path for path, _ in images])

    def run(item: tuple[Path, str]) -> ImageOutcome:
        path, label = item
        try:
            event = {"s3_bucket": bucket, "s3_key": keys[path]}
            arn = start_execution(sfn, outputs["StateMachineArn"], event, "scones")
            result = wait_for_execution(sfn, arn, timeout_s, poll_s=0.1, max_poll_s=0.5)
        except WorkflowRunError as e:
            return ImageOutcome(path, label, None, "failed", None, error=type(e).__name__, message=str(e))
        return outcome_of(result, path, label, sfn)

    return progress_map(run, images, concurrency, "workflow", "execution")


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
            return ImageOutcome(path, label, None, "failed", None, error=type(e).__name__, message=str(e))
        seconds = time.perf_counter() - started
        outcome = "routed" if max(scores) >= threshold else "rejected"
        return ImageOutcome(path, label, scores, outcome, seconds)

    return progress_map(score, images, concurrency, "endpoint", "image")
