"""Last step of the workflow: let the event through only when the model is confident, so that no
driver is routed on a guess (contract: lambdas/contract.py)."""

from __future__ import annotations

from lambdas.contract import (
    CLASSES,
    FILTER_INPUT_SCHEMA,
    ImageEvent,
    LowConfidenceError,
    predicted_class,
    read_filter_settings,
    validate_event,
)
from lambdas.logs import bind_correlation_id, handler_logger
from lambdas.metrics import put_metrics

logger = handler_logger(__name__)


def handler(event: dict, context: object) -> ImageEvent:
    correlation = bind_correlation_id(event, context)
    event = validate_event(event, FILTER_INPUT_SCHEMA)
    inferences = event["inferences"]
    predicted = predicted_class(inferences)
    # LowConfidence is 1 for a rejected image and 0 for a routed one: its Average is the share rejected,
    # which the template's LowConfidenceRateAlarm watches.
    try:
        label = check_confidence(inferences, read_filter_settings().confidence_threshold)
    except LowConfidenceError:
        put_metrics({"LowConfidence": (1, "Count"), "Routed": (0, "Count")}, predicted, correlation)
        raise
    put_metrics({"LowConfidence": (0, "Count"), "Routed": (1, "Count")}, label, correlation)
    logger.info("s3://%s/%s is a %s", event["s3_bucket"], event["s3_key"], label)
    return event


def check_confidence(inferences: list[float], threshold: float) -> str:
    """The predicted class if its probability reaches `threshold`, else LowConfidenceError."""
    top = max(inferences)
    if top < threshold:
        scores = ", ".join(f"{name} {p:.4f}" for name, p in zip(CLASSES, inferences, strict=True))
        raise LowConfidenceError(f"top score {top:.4f} is below the threshold {threshold} ({scores})")
    return predicted_class(inferences)
