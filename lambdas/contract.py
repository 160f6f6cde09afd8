"""The event contract of the Scones workflow, written once: what each Lambda receives and returns,
the named errors it raises, and the environment variables the template sets for it.

The workflow passes one JSON object from state to state; each handler checks it against the
schema of its stage and returns it with its own keys filled in:

    stage                  requires                              adds
    serialize_image_data   s3_bucket, s3_key (image_data: "")    image_data (base64), inferences: []
    classify_image         s3_bucket, s3_key, image_data         inferences: [p_bicycle, p_motorcycle]
    filter_low_confidence  ... and inferences                    nothing: passes or raises LowConfidenceError

Keys the contract does not name are carried along unchanged. Example events: tests/events/*.json.
`python -m lambdas.contract` prints the JSON schemas.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import NotRequired, TypedDict

CLASSES = ("bicycle", "motorcycle")  # the order of `inferences`
DEFAULT_CONFIDENCE_THRESHOLD = 0.93

# Step Functions refuses a state input or output above 256 KiB of UTF-8 JSON. The lambda:invoke
# integration wraps the Payload in metadata (status code, headers) before OutputPath drops it,
# and the next state adds `inferences`: keep this much headroom below the limit.
STATE_PAYLOAD_LIMIT_BYTES = 262_144
INVOKE_METADATA_ALLOWANCE_BYTES = 8_192
MAX_EVENT_BYTES = STATE_PAYLOAD_LIMIT_BYTES - INVOKE_METADATA_ALLOWANCE_BYTES

# The configuration contract: every environment variable a handler reads (the template sets them).
ENV_MODEL_ENDPOINT_NAME = "MODEL_ENDPOINT_NAME"  # classify_image: SageMaker endpoint to invoke
ENV_CONFIDENCE_THRESHOLD = "CONFIDENCE_THRESHOLD"  # filter_low_confidence: minimum top score, 0..1
# boto3 itself reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME (empty = unset); the
# handlers never do.


class ImageEvent(TypedDict):
    """The event as it travels between the states."""

    s3_bucket: str
    s3_key: str
    image_data: NotRequired[str]  # base64 of the image's bytes; absent or "" before serialization
    inferences: NotRequired[list[float]]  # [p_bicycle, p_motorcycle]; [] before classification


# --- Named errors ----------------------------------------------------------------------------
# AWS reports a failed Lambda with errorType = the exception's class name, which is what the state
# machine's Retry and Catch match. Emulators that report every failure as Runtime.HandlerError
# (ministack, see cloud/EMULATORS.md) keep only the message, so the message starts with the name.


class WorkflowError(Exception):
    """Base of the workflow's named errors; str() is '<ErrorName>: <message>'."""

    def __str__(self) -> str:
        return f"{type(self).__name__}: {super().__str__()}"


class InvalidEventError(WorkflowError):
    """The event is not an object, or a key is missing or malformed."""


class ConfigurationError(WorkflowError):
    """An environment variable the handler needs is missing or malformed (a deployment bug)."""


class BucketNotFoundError(WorkflowError):
    """The event's s3_bucket does not exist."""


class ImageNotFoundError(WorkflowError):
    """The event's s3_key does not exist in the bucket."""


class ImageAccessDeniedError(WorkflowError):
    """S3 refused the read; on AWS the function may read only the stack's image bucket."""


class NotAnImageError(WorkflowError):
    """The object is not a PNG or JPEG image."""


class ImageTooLargeError(WorkflowError):
    """The image, base64-encoded in the event, would exceed the Step Functions payload limit."""


class EndpointError(WorkflowError):
    """The model endpoint rejected the request or answered something other than two probabilities."""


class EndpointUnavailableError(WorkflowError):
    """The model endpoint could not be reached or was throttled: transient, the state machine retries."""


class LowConfidenceError(WorkflowError):
    """The top class probability is below the threshold: the image must not be routed on a guess."""


# --- Schemas ---------------------------------------------------------------------------------

_BUCKET = {
    "type": "string",
    "minLength": 3,
    "maxLength": 63,
    "pattern": "^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
    "description": "S3 bucket holding the image",
}
_KEY = {"type": "string", "minLength": 1, "maxLength": 1024, "description": "S3 key of the image"}
_IMAGE_DATA = {
    "type": "string",
    "minLength": 4,
    "pattern": "^[A-Za-z0-9+/]*={0,2}$",
    "description": "the image's bytes, base64 (standard alphabet, padded)",
}
_INFERENCES = {
    "type": "array",
    "items": {"type": "number", "minimum": 0, "maximum": 1},
    "minItems": len(CLASSES),
    "maxItems": len(CLASSES),
    "description": "class probabilities in the order " + ", ".join(CLASSES),
}


def _object_schema(title: str, required: list[str], properties: dict) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": True,
    }


SERIALIZE_INPUT_SCHEMA = _object_schema(
    "serialize_image_data input",
    ["s3_bucket", "s3_key"],
    {
        "s3_bucket": _BUCKET,
        "s3_key": _KEY,
        "image_data": {"type": "string", "maxLength": 0, "description": "absent or empty"},
        "inferences": {"type": "array"},
    },
)
CLASSIFY_INPUT_SCHEMA = _object_schema(
    "classify_image input",
    ["s3_bucket", "s3_key", "image_data"],
    {"s3_bucket": _BUCKET, "s3_key": _KEY, "image_data": _IMAGE_DATA, "inferences": {"type": "array"}},
)
FILTER_INPUT_SCHEMA = _object_schema(
    "filter_low_confidence input",
    ["s3_bucket", "s3_key", "image_data", "inferences"],
    {"s3_bucket": _BUCKET, "s3_key": _KEY, "image_data": _IMAGE_DATA, "inferences": _INFERENCES},
)
# The workflow's output on success is the filter's input, unchanged.
SCHEMAS = {
    "serialize_image_data": SERIALIZE_INPUT_SCHEMA,
    "classify_image": CLASSIFY_INPUT_SCHEMA,
    "filter_low_confidence": FILTER_INPUT_SCHEMA,
}


def schema_problems(value: object, schema: dict, path: str = "event") -> list[str]:
    """Where `value` breaks `schema`, in words. Covers the JSON Schema keywords used above."""
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    if kind and not checks[kind](value):
        return [f"{path} must be a JSON {kind}, got {type(value).__name__}"]
    problems: list[str] = []
    if kind == "object":
        problems += [f"{path}.{name} is missing" for name in schema.get("required", []) if name not in value]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += schema_problems(value[name], sub, f"{path}.{name}")
    elif kind == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            problems.append(f"{path} must hold {schema['minItems']} items, got {len(value)}")
        for i, item in enumerate(value):
            problems += schema_problems(item, schema.get("items", {}), f"{path}[{i}]")
    elif kind == "string":
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            limits = f"{schema.get('minLength', 0)}..{schema.get('maxLength', 'any')}"
            problems.append(f"{path} must be {limits} characters long, got {len(value)}")
        elif "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path} does not match {schema['pattern']}")
    elif kind == "number" and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        problems.append(f"{path} must lie in [{schema.get('minimum')}, {schema.get('maximum')}], got {value}")
    return problems


def validate_event(event: object, schema: dict) -> ImageEvent:
    """Return `event` if it fits `schema`, else raise InvalidEventError naming every problem."""
    problems = schema_problems(event, schema)
    if problems:
        raise InvalidEventError(f"{schema['title']}: " + "; ".join(problems))
    return event  # type: ignore[return-value]


# --- Images ----------------------------------------------------------------------------------

_IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def image_content_type(data: bytes) -> str:
    """The MIME type of a PNG or JPEG by its signature; NotAnImageError for anything else."""
    for signature, content_type in _IMAGE_SIGNATURES.items():
        if data.startswith(signature):
            return content_type
    raise NotAnImageError(f"expected a PNG or JPEG, got {len(data)} bytes starting {data[:8]!r}")


# --- Settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifySettings:
    endpoint_name: str


@dataclass(frozen=True)
class FilterSettings:
    confidence_threshold: float


def read_classify_settings() -> ClassifySettings:
    name = os.environ.get(ENV_MODEL_ENDPOINT_NAME, "")
    if not name:
        raise ConfigurationError(f"{ENV_MODEL_ENDPOINT_NAME} is not set; the template sets it")
    return ClassifySettings(endpoint_name=name)


def read_filter_settings() -> FilterSettings:
    raw = os.environ.get(ENV_CONFIDENCE_THRESHOLD, "") or str(DEFAULT_CONFIDENCE_THRESHOLD)
    try:
        threshold = float(raw)
    except ValueError as e:
        raise ConfigurationError(f"{ENV_CONFIDENCE_THRESHOLD}={raw!r} is not a number") from e
    if not 0.0 <= threshold <= 1.0:
        raise ConfigurationError(f"{ENV_CONFIDENCE_THRESHOLD}={raw!r} is outside [0, 1]")
    return FilterSettings(confidence_threshold=threshold)


if __name__ == "__main__":
    print(json.dumps(SCHEMAS, indent=2))
