"""Last step of the batch workflow (statemachine/batch_classification.asl.json): count the Distributed
Map's items as routed, rejected or failed per class, write that summary to S3, and fail the execution
with TooManyFailuresError when more items failed than tolerated (after writing the summary)."""

from __future__ import annotations

import json

from lambdas.clients import s3_client
from lambdas.contract import (
    CLASSES,
    LOW_CONFIDENCE_ERROR,
    InvalidEventError,
    Outcome,
    WorkflowError,
    error_message,
    error_name,
    predicted_class,
)
from lambdas.logs import handler_logger

logger = handler_logger(__name__)

# Summaries are written beside the images, never under them: the batch lists a prefix and must not
# read its own summaries as images. The template grants s3:PutObject on this prefix only.
SUMMARY_PREFIX = "batch-summaries/"
MAX_LISTED_ITEMS = 100  # rejected and failed keys listed in the summary; the counts are always complete


class TooManyFailuresError(WorkflowError):
    """More of the batch's items failed than the tolerated failure percentage allows."""


def handler(event: dict, context: object) -> dict:
    for name, kind in (("bucket", str), ("prefix", str), ("execution_name", str), ("results", list)):
        if not isinstance(event.get(name) if isinstance(event, dict) else None, kind):
            raise InvalidEventError(f"summarize_batch: event.{name} must be a {kind.__name__}")
    tolerated = event.get("tolerated_failure_percentage", 0)
    if isinstance(tolerated, bool) or not isinstance(tolerated, int | float) or not 0 <= tolerated <= 100:
        raise InvalidEventError(
            f"summarize_batch: tolerated_failure_percentage {tolerated!r} is not a number in [0, 100]"
        )
    summary = summarize(event["results"], event["bucket"], event["prefix"], tolerated)
    key = summary_key(event["execution_name"])
    s3_client().put_object(
        Bucket=event["bucket"], Key=key, Body=json.dumps(summary, indent=2).encode(), ContentType="application/json"
    )
    location = f"s3://{event['bucket']}/{key}"
    logger.info("batch %s: %s", location, json.dumps(summary["totals"]))
    if summary["failure_threshold_exceeded"]:
        raise TooManyFailuresError(
            f"{summary['totals']['failed']} of {summary['totals']['items']} items failed, more than the tolerated "
            f"{tolerated}% (summary: {location})"
        )
    return {"summary_location": location, "totals": summary["totals"], "classes": summary["classes"]}


def summary_key(execution_name: str) -> str:
    return f"{SUMMARY_PREFIX}{execution_name}.json"


def summarize(results: list, bucket: str, prefix: str, tolerated_failure_percentage: float) -> dict:
    """Counts per class of the Map's item results ({"s3_key", "outcome", "inferences"?, "error"?,
    "cause"?}); anything else in the list (an emulator's null for a failed child) counts as failed."""
    classes = {name: {outcome.value: 0 for outcome in Outcome} for name in CLASSES}
    unclassified_failed = 0
    rejected, failed = [], []
    for item in results:
        if not isinstance(item, dict) or item.get("outcome") not in set(Outcome):
            unclassified_failed += 1
            failed.append({"s3_key": None, "error": "UnknownError", "message": f"unreadable item result {item!r:.200}"})
            continue
        outcome, label = Outcome(item["outcome"]), predicted_class(item.get("inferences"))
        if outcome == Outcome.FAILED:
            name = error_name(item.get("error"), item.get("cause")) or "UnknownError"
            if name == LOW_CONFIDENCE_ERROR and label is not None:
                outcome = Outcome.REJECTED  # an emulator that drops error names (cloud/EMULATORS.md)
            else:
                failed.append(
                    {"s3_key": item.get("s3_key"), "error": name, "message": error_message(item.get("cause"))}
                )
        if outcome == Outcome.REJECTED:
            rejected.append({"s3_key": item.get("s3_key"), "class": label, "inferences": item.get("inferences")})
        if label is None:
            unclassified_failed += 1
        else:
            classes[label][outcome.value] += 1
    totals = {
        "items": len(results),
        **{outcome.value: sum(c[outcome.value] for c in classes.values()) for outcome in Outcome},
    }
    totals[Outcome.FAILED.value] += unclassified_failed
    return {
        "bucket": bucket,
        "prefix": prefix,
        "totals": totals,
        "classes": classes,
        # Failed before the model answered (not an image, unreadable, endpoint down): no class is known.
        "unclassified_failed": unclassified_failed,
        "tolerated_failure_percentage": tolerated_failure_percentage,
        "failure_threshold_exceeded": totals["failed"] * 100 > tolerated_failure_percentage * max(totals["items"], 1),
        "rejected_items": rejected[:MAX_LISTED_ITEMS],
        "failed_items": failed[:MAX_LISTED_ITEMS],
    }
