"""Last step of the workflow: let the event through only when the model is confident, so that no
driver is routed on a guess (contract: lambdas/contract.py)."""

from __future__ import annotations

from lambdas.contract import (
    CLASSES,
    FILTER_INPUT_SCHEMA,
    ImageEvent,
    LowConfidenceError,
    read_filter_settings,
    validate_event,
)
from lambdas.logs import handler_logger

logger = handler_logger(__name__)


def handler(event: dict, context: object) -> ImageEvent:
    event = validate_event(event, FILTER_INPUT_SCHEMA)
    label = check_confidence(event["inferences"], read_filter_settings().confidence_threshold)
    logger.info("s3://%s/%s is a %s", event["s3_bucket"], event["s3_key"], label)
    return event


def check_confidence(inferences: list[float], threshold: float) -> str:
    """The predicted class if its probability reaches `threshold`, else LowConfidenceError."""
    top = max(inferences)
    if top < threshold:
        scores = ", ".join(f"{name} {p:.4f}" for name, p in zip(CLASSES, inferences, strict=True))
        raise LowConfidenceError(f"top score {top:.4f} is below the threshold {threshold} ({scores})")
    return CLASSES[inferences.index(top)]
