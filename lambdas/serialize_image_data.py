"""First step of the workflow: read the image the event names from S3 and put it into the event,
base64-encoded, for the classifier (contract: lambdas/contract.py)."""

from __future__ import annotations

import base64
import json
import math

from botocore.exceptions import ClientError

from lambdas.clients import s3_client
from lambdas.contract import (
    MAX_EVENT_BYTES,
    SERIALIZE_INPUT_SCHEMA,
    BucketNotFoundError,
    ImageAccessDeniedError,
    ImageEvent,
    ImageNotFoundError,
    ImageTooLargeError,
    image_content_type,
    validate_event,
)
from lambdas.logs import bind_correlation_id, handler_logger

logger = handler_logger(__name__)


def handler(event: dict, context: object) -> ImageEvent:
    bind_correlation_id(event, context)
    event = validate_event(event, SERIALIZE_INPUT_SCHEMA)
    image = read_image(s3_client(), event["s3_bucket"], event["s3_key"])
    output = serialize_image(event, image)
    logger.info("serialized s3://%s/%s: %d image bytes", event["s3_bucket"], event["s3_key"], len(image))
    return output


def read_image(s3, bucket: str, key: str) -> bytes:
    """The object's bytes, if it exists, is a PNG or JPEG, and fits in the event once encoded."""
    location = f"s3://{bucket}/{key}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist (reading {location})") from e
        if code in ("NoSuchKey", "404"):
            raise ImageNotFoundError(f"{location} does not exist") from e
        if code in ("AccessDenied", "403"):
            raise ImageAccessDeniedError(f"reading {location} was denied") from e
        raise
    body = response["Body"]
    size = response["ContentLength"]
    if encoded_size(size) > MAX_EVENT_BYTES:
        body.close()  # do not download what cannot be passed on
        raise ImageTooLargeError(too_large_message(location, size))
    data = body.read()
    image_content_type(data, location)
    return data


def serialize_image(event: ImageEvent, image: bytes) -> ImageEvent:
    output: ImageEvent = {**event, "image_data": base64.b64encode(image).decode("ascii"), "inferences": []}
    # The image alone fits (checked in read_image), but the keys carried along may not.
    event_bytes = len(json.dumps(output).encode("utf-8"))
    if event_bytes > MAX_EVENT_BYTES:
        raise ImageTooLargeError(
            f"the event for s3://{event['s3_bucket']}/{event['s3_key']} would be {event_bytes} bytes, "
            f"above the {MAX_EVENT_BYTES}-byte limit between states"
        )
    return output


def encoded_size(n_bytes: int) -> int:
    """Length of the base64 encoding of `n_bytes` bytes."""
    return 4 * math.ceil(n_bytes / 3)


def too_large_message(location: str, n_bytes: int) -> str:
    largest = MAX_EVENT_BYTES * 3 // 4
    return (
        f"{location} is {n_bytes} bytes ({encoded_size(n_bytes)} in base64); images up to about "
        f"{largest} bytes fit in the Step Functions state payload (256 KiB)"
    )
