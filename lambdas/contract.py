"""The event contract of the Scones workflow, written once: what each Lambda receives and returns,
the named errors it raises, and the environment variables the template sets for it.

The workflow passes one JSON object from state to state; each handler checks it against the
schema of its stage and returns it with its own keys filled in:

    stage                  requires                              adds
    serialize_image_data   s3_bucket, s3_key (image_data: "")    image_data (base64), inferences: []
    classify_image         s3_bucket, s3_key, image_data         inferences: [p_bicycle, p_motorcycle]
    filter_low_confidence  ... and inferences                    nothing: passes or raises LowConfidenceError

Keys the contract does not name are carried along unchanged (nesting at most MAX_EVENT_DEPTH levels).
Images are PNG or JPEG (IMAGE_FORMATS, the one list the model server decodes too). Example events, good
and hostile: tests/events/*.json. `python -m lambdas.contract` prints the JSON schemas.

One module of about 400 lines on purpose: it is the contract written once, the one file every Lambda zip
shares besides the clients and loggers; split, each part would have to ship in every zip anyway.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from enum import StrEnum
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


# --- The vocabulary every part speaks -------------------------------------------------------
# The Lambdas, the host's workflow runner, its reports, the monitor and the console name classes, outcomes
# and errors with these, so that none of them writes its own argmax or its own error parsing.


class Outcome(StrEnum):
    """What the workflow did with one image."""

    ROUTED = "routed"  # classified confidently: a driver is routed on it
    REJECTED = "rejected"  # failed with LowConfidenceError: left for manual dispatch
    FAILED = "failed"  # failed with any other error (or did not finish)


LOW_CONFIDENCE_ERROR = LowConfidenceError.__name__
# Error names under which an emulator reports a Lambda failure when it drops the exception's name
# (ministack: Runtime.HandlerError, see cloud/EMULATORS.md). AWS reports the name itself.
UNNAMED_LAMBDA_ERRORS = frozenset({"Runtime.HandlerError", "Lambda.Unknown"})
_NAMED_MESSAGE = re.compile(r"^([A-Z][A-Za-z0-9]*Error): ")


def predicted_class(scores: object) -> str | None:
    """The class of the highest score (the first on a tie); None unless `scores` has one number per class."""
    if not isinstance(scores, list | tuple) or len(scores) != len(CLASSES):
        return None
    if not all(isinstance(score, int | float) and not isinstance(score, bool) for score in scores):
        return None
    return CLASSES[max(range(len(CLASSES)), key=scores.__getitem__)]


def error_message(cause: str | None) -> str:
    """The failed function's message when a Step Functions cause is a Lambda error payload, else the cause."""
    try:
        payload = json.loads(cause or "")
    except json.JSONDecodeError:
        return cause or ""
    return str(payload.get("errorMessage", cause)) if isinstance(payload, dict) else (cause or "")


def error_name(error: str | None, cause: str | None) -> str | None:
    """The named error of a failure as Step Functions reports it (`error`, `cause`), also from emulators that
    report every Lambda failure as an unnamed one: the workflow's messages start with their error's name."""
    if error not in UNNAMED_LAMBDA_ERRORS:
        return error
    match = _NAMED_MESSAGE.match(error_message(cause))
    return match.group(1) if match else error


def outcome_of(status: str, error: str | None, cause: str | None) -> Outcome:
    """The outcome of an execution (or a batch item) from its status and, when it failed, its error."""
    if status == "SUCCEEDED":
        return Outcome.ROUTED
    return Outcome.REJECTED if error_name(error, cause) == LOW_CONFIDENCE_ERROR else Outcome.FAILED


# --- Schemas ---------------------------------------------------------------------------------
# Standard JSON Schema 2020-12 keywords, plus two annotations of ours that other validators ignore:
# "x-rule" (the rule a "pattern" encodes, in words, for the error message) and "x-maxUtf8Bytes".

# S3's naming rules for general purpose buckets (docs.aws.amazon.com/AmazonS3/latest/userguide/
# bucketnamingrules.html): 3-63 lower-case letters, digits, dots and hyphens, a letter or digit at each
# end, no two adjacent dots, not an IP address, none of the reserved prefixes and suffixes.
_BUCKET = {
    "type": "string",
    "minLength": 3,
    "maxLength": 63,
    "pattern": (
        r"^(?!xn--|sthree-|amzn-s3-demo-)(?!.*(?:-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$)"
        r"(?!(?:\d{1,3}\.){3}\d{1,3}$)(?!.*\.\.)[a-z0-9][a-z0-9.-]*[a-z0-9]$"
    ),
    "x-rule": "an S3 bucket name: lower-case letters, digits, '.' and '-', a letter or digit at each end, "
    "no '..', not an IP address, no reserved prefix (xn--, sthree-) or suffix (-s3alias, --ol-s3)",
    "description": "S3 bucket holding the image",
}
# S3 takes any UTF-8 key up to 1024 bytes. We also refuse control characters (S3's XML listings cannot
# carry most of them) and "." or ".." path segments: a key like "../../etc/passwd" means one object on S3
# but another path wherever a client, proxy or emulator normalizes URLs, so no one has to guess.
_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 1024,
    "x-maxUtf8Bytes": 1024,
    "pattern": r"^(?!(?:.*/)?\.\.?(?:/|$))[^\u0000-\u001f\u007f]+$",
    "x-rule": "an S3 key without control characters and without '.' or '..' path segments",
    "description": "S3 key of the image (UTF-8, at most 1024 bytes)",
}
_IMAGE_DATA = {
    "type": "string",
    "minLength": 4,
    "contentEncoding": "base64",
    "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
    "x-rule": "base64 in the standard alphabet (A-Z a-z 0-9 + /), padded with '=' to a multiple of 4, "
    "without whitespace or a data: prefix",
    "description": "the image's bytes, base64 (standard alphabet, padded)",
}
_INFERENCES = {
    "type": "array",
    "items": {"type": "number", "minimum": 0, "maximum": 1},
    "minItems": len(CLASSES),
    "maxItems": len(CLASSES),
    "description": "class probabilities in the order " + ", ".join(CLASSES),
}
# Our events nest two levels (the object, then `inferences`). Keys carried along may nest more, but not
# without end: Python's json (the Lambda runtime's) fails near 1,000 levels and Step Functions' payload
# is 256 KiB, so deeper values are refused here, checked without recursion, before anything walks them.
MAX_EVENT_DEPTH = 32
MAX_REPORTED_PROBLEMS = 10  # an error message names this many problems, then counts the rest
_SHOWN_CHARS = 60  # of a bad value, in an error message


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


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "...")


def _string_problems(value: str, schema: dict, path: str) -> list[str]:
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        limits = f"{schema.get('minLength', 0)}..{schema.get('maxLength', 'any')}"
        return [f"{path} must be {limits} characters long, got {len(value)}"]
    if "x-maxUtf8Bytes" in schema:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as e:
            return [f"{path} is not valid UTF-8 text (a lone surrogate at character {e.start})"]
        if size > schema["x-maxUtf8Bytes"]:
            return [f"{path} must be at most {schema['x-maxUtf8Bytes']} bytes of UTF-8, got {size}"]
    if "pattern" in schema and not re.search(schema["pattern"], value):
        hint = base64_hint(value) if schema.get("contentEncoding") == "base64" else ""
        shown = "" if schema.get("contentEncoding") else f" {_shown(value)}"
        return [f"{path}{shown} must be {schema.get('x-rule', 'matching ' + schema['pattern'])}{hint}"]
    return []


def base64_hint(value: str) -> str:
    """What a string that is not standard padded base64 most likely is, for the error message."""
    if value.startswith("data:"):
        return "; it starts with a data: URI prefix: send only the base64 after the comma"
    if any(c in value for c in " \t\r\n"):
        return "; it holds whitespace or line breaks (MIME-style base64): remove them"
    if re.fullmatch(r"[A-Za-z0-9_-]+=*", value) and re.search(r"[_-]", value):
        return "; it uses the URL-safe alphabet ('-' and '_'): use base64.b64encode, not urlsafe_b64encode"
    if re.fullmatch(r"[A-Za-z0-9+/]+", value):
        return f"; it is {len(value)} characters long, not a multiple of 4: the '=' padding is missing"
    return ""


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
        return [f"{path} must be a JSON {kind}, got {_json_type(value)}"]
    problems: list[str] = []
    if kind == "object":
        problems += [f"{path}.{name} is missing" for name in schema.get("required", []) if name not in value]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += schema_problems(value[name], sub, f"{path}.{name}")
    elif kind == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            problems.append(f"{path} must hold {schema['minItems']} items, got {len(value)}")
        for i, item in enumerate(value[: MAX_REPORTED_PROBLEMS + 1]):
            problems += schema_problems(item, schema.get("items", {}), f"{path}[{i}]")
    elif kind == "string":
        problems += _string_problems(value, schema, path)
    elif kind == "number" and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        problems.append(f"{path} must lie in [{schema.get('minimum')}, {schema.get('maximum')}], got {value}")
    return problems


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else type(value).__name__)


def json_depth(value: object, limit: int = MAX_EVENT_DEPTH) -> int:
    """How deep `value` nests (a scalar is 0, [] or {} is 1), counted without recursion; stops
    counting at limit + 1, so a hostile value costs no more than that to measure."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def wrapper_hint(event: object, schema: dict) -> str:
    """A hint when the event is not the object itself but wraps or encodes it: the course's Lambdas
    answer {"statusCode": 200, "body": {...}}, and JSON is sometimes encoded twice."""
    required = schema.get("required", [])

    def holds_keys(value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                return None
        return value if isinstance(value, dict) and any(name in value for name in required) else None

    if isinstance(event, dict) and not any(name in event for name in required) and "body" in event:
        inner = holds_keys(event["body"])
        if inner is not None:
            found = ", ".join(name for name in required if name in inner)
            encoded = " (as a JSON string)" if isinstance(event["body"], str) else ""
            return (
                f". The keys {found} were found under `body`{encoded}: this is a Lambda's "
                '{"statusCode": ..., "body": ...} response, not the event. Send the object in `body` itself '
                'as the input, e.g. {"s3_bucket": "...", "s3_key": "..."}'
            )
    if isinstance(event, str) and holds_keys(event) is not None:
        return ". The event is a JSON string holding an object (encoded twice): send the object itself"
    inferences = event.get("inferences") if isinstance(event, dict) else None
    if "inferences" in schema.get("properties", {}) and isinstance(inferences, str):
        try:
            decoded = json.loads(inferences)
        except (ValueError, RecursionError):
            decoded = None
        if isinstance(decoded, list):
            return (
                ". event.inferences is a JSON string holding a list (the course's classifier json.dumps it): "
                "send the list itself, e.g. [0.97, 0.03]"
            )
    return ""


def validate_event(event: object, schema: dict) -> ImageEvent:
    """Return `event` if it fits `schema`, else raise InvalidEventError naming the problems."""
    depth = json_depth(event)
    if depth > MAX_EVENT_DEPTH:
        raise InvalidEventError(
            f"{schema['title']}: event nests more than {MAX_EVENT_DEPTH} levels deep (the limit); "
            "send a flat object with s3_bucket and s3_key"
        )
    problems = schema_problems(event, schema)
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append("and more")
        raise InvalidEventError(f"{schema['title']}: " + "; ".join(shown) + wrapper_hint(event, schema))
    return event  # type: ignore[return-value]


# --- Images ----------------------------------------------------------------------------------
# The one list of image formats the workflow accepts, with their MIME types and signatures. The model
# server (local_model/inference.py, ACCEPTED_IMAGE_FORMATS) decodes exactly these and no others: fewer
# decoders facing untrusted bytes, and the two formats the images come in (CIFAR PNGs, camera JPEGs, any
# mode: grayscale, RGBA, palette, 16-bit, CMYK are converted to RGB). The container cannot import this
# module (it holds only local_model/), so tests/unit/local_model/test_serve_hostile_inputs.py checks the two
# lists agree.
IMAGE_FORMATS = {
    "PNG": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "JPEG": ("image/jpeg", (b"\xff\xd8\xff",)),
}
# Images in other formats are refused; these signatures only name the format in the error message.
_REFUSED_FORMATS = (
    (re.compile(rb"GIF8[79]a"), "a GIF file"),
    (re.compile(rb"BM"), "a BMP file"),
    (re.compile(rb"RIFF....WEBP", re.DOTALL), "a WEBP file"),
    (re.compile(rb"II\*\x00|MM\x00\*"), "a TIFF file"),
    (re.compile(rb"....ftyp(?:heic|heix|heif|mif1|msf1|avif)", re.DOTALL), "a HEIF or AVIF file"),
    (re.compile(rb"(?:\xef\xbb\xbf)?\s*<(?:\?xml|svg|!DOCTYPE svg)", re.IGNORECASE), "an SVG (XML) file"),
    (re.compile(rb"%PDF-"), "a PDF file"),
    (re.compile(rb"\x00\x00\x01\x00"), "an ICO file"),
)
ACCEPTED_FORMATS_TEXT = " or ".join(IMAGE_FORMATS)  # "PNG or JPEG"


def image_content_type(data: bytes, source: str = "the image") -> str:
    """The MIME type of an accepted image by its signature; NotAnImageError for anything else."""
    for content_type, signatures in IMAGE_FORMATS.values():
        if data.startswith(signatures):
            return content_type
    if not data:
        raise NotAnImageError(f"{source} is empty (0 bytes); expected a {ACCEPTED_FORMATS_TEXT} image")
    refused = next((name for pattern, name in _REFUSED_FORMATS if pattern.match(data)), None)
    start = f"{len(data)} bytes starting {data[:8]!r}"
    if refused:
        raise NotAnImageError(
            f"{source} is {refused} ({start}); the workflow accepts {ACCEPTED_FORMATS_TEXT} only: convert it"
        )
    raise NotAnImageError(f"{source} is not a {ACCEPTED_FORMATS_TEXT} image ({start})")


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
