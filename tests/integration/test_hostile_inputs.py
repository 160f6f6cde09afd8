"""Hostile input through the deployed workflow on a real emulator: bad images in S3 and bad events each end
in their named error (or, for the formats the contract converts, in a verdict), and none stays RUNNING.
The executions start together (a few at a time) in one fixture; each case is then its own test.

The emulators keep different parts of a Lambda's error (cloud/EMULATORS.md): LocalStack and AWS report the
exception's name as the error, ministack reports Runtime.HandlerError. Both keep the message, which starts
with the name, so each case asserts `error_name` (the name from either) and the message's prefix."""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from lambdas.contract import CLASSES
from scones.local.emulator import is_ministack
from scones.workflow.execution import (
    ExecutionResult,
    ExecutionTimeoutError,
    upload_image,
    wait_for_execution,
)

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

EXECUTION_TIMEOUT_S = 120.0  # generous for cold starts on busy cores; a run takes about a second
PARALLEL_EXECUTIONS = 4
DEEP_INPUT_TIMEOUT_S = 10.0  # a refused input fails in a second; this one may never end (ministack)
FIFTY_MB = 50 * 1024 * 1024
VERDICT = "verdict"  # accepted input: routed (SUCCEEDED) or refused by confidence, never any other error


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims width x height pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


def nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Case:
    """`event(put)` builds the execution's input; put(body, key=None) stores an object and returns its event."""

    event: Callable
    expected: str  # the named error, or VERDICT
    mentions: str = ""
    # What LocalStack 2026.3.0 gives instead, where it changes the input before our handler sees it.
    on_localstack: tuple[str, str] | None = None


CASES: dict[str, Case] = {
    # Objects in S3 that are not (acceptable) images
    "zero-byte object": Case(lambda c: c.put(b""), "NotAnImageError", "is empty"),
    "truncated PNG": Case(lambda c: c.put(c.png[: len(c.png) // 2]), "EndpointError", "InvalidImageError"),
    "truncated JPEG": Case(lambda c: c.put(c.jpeg[: len(c.jpeg) // 2]), "EndpointError", "InvalidImageError"),
    "decompression bomb": Case(lambda c: c.put(png_claiming_size(40000, 40000)), "EndpointError", "ImageTooLargeError"),
    "50 MB object": Case(lambda c: c.put(b"\x89PNG\r\n\x1a\n" + bytes(FIFTY_MB)), "ImageTooLargeError", "256 KiB"),
    "SVG": Case(
        lambda c: c.put(b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"/>'), "NotAnImageError", "SVG"
    ),
    "GIF": Case(lambda c: c.put(encode(Image.open(io.BytesIO(c.png)).convert("P"), "GIF")), "NotAnImageError", "GIF"),
    "WEBP": Case(lambda c: c.put(encode(Image.open(io.BytesIO(c.png)), "WEBP")), "NotAnImageError", "WEBP"),
    "PDF": Case(lambda c: c.put(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"), "NotAnImageError", "PDF"),
    # Events that break the contract
    "../ key": Case(lambda c: {"s3_bucket": c.bucket, "s3_key": "../../etc/passwd"}, "InvalidEventError", "'..'"),
    "./ segment in key": Case(lambda c: {"s3_bucket": c.bucket, "s3_key": "images/./a.png"}, "InvalidEventError"),
    "NUL in key": Case(lambda c: {"s3_bucket": c.bucket, "s3_key": "a\u0000.png"}, "InvalidEventError", "control"),
    "IP address as bucket": Case(lambda c: {"s3_bucket": "192.168.0.1", "s3_key": "a.png"}, "InvalidEventError"),
    "wrong types": Case(lambda c: {"s3_bucket": ["b"], "s3_key": 7}, "InvalidEventError", "must be a JSON string"),
    "list instead of object": Case(lambda c: [c.bucket, "a.png"], "InvalidEventError", "got array"),
    "string instead of object": Case(lambda c: "s3://bucket/a.png", "InvalidEventError", "got string"),
    "number instead of object": Case(lambda c: 42, "InvalidEventError", "got number"),
    # LocalStack hands the Lambda {} for a null input: the same named error, for missing keys.
    "null instead of object": Case(lambda c: None, "InvalidEventError", "got null", ("InvalidEventError", "missing")),
    # LocalStack decodes a JSON string input a second time, so the handler gets the object it holds.
    "JSON encoded twice": Case(
        lambda c: json.dumps({"s3_bucket": c.bucket, "s3_key": "hostile/missing.png"}),
        "InvalidEventError",
        "encoded twice",
        ("ImageNotFoundError", "hostile/missing.png does not exist"),
    ),
    "statusCode/body wrapper": Case(
        lambda c: {"statusCode": 200, "body": {"s3_bucket": c.bucket, "s3_key": "a.png"}},
        "InvalidEventError",
        "were found under `body`",
    ),
    "statusCode/body wrapper, body a string": Case(
        lambda c: {"statusCode": 200, "body": json.dumps({"s3_bucket": c.bucket, "s3_key": "a.png"})},
        "InvalidEventError",
        "under `body` (as a JSON string)",
    ),
    "JSON nested 100 deep": Case(
        lambda c: {"s3_bucket": c.bucket, "s3_key": "a.png", "extra": nested(100)}, "InvalidEventError", "nests"
    ),
    "image_data that is not base64": Case(
        lambda c: {"s3_bucket": c.bucket, "s3_key": "a.png", "image_data": "!!!!"}, "InvalidEventError", "image_data"
    ),
    # Accepted, converted by the model server, and classified
    "CMYK JPEG": Case(lambda c: c.put(encode(Image.open(io.BytesIO(c.png)).convert("CMYK"), "JPEG")), VERDICT),
    "16-bit PNG": Case(lambda c: c.put(encode(Image.fromarray(c.gray16), "PNG")), VERDICT),
    "grayscale PNG": Case(lambda c: c.put(encode(Image.open(io.BytesIO(c.png)).convert("L"), "PNG")), VERDICT),
    "1x1 PNG": Case(lambda c: c.put(encode(Image.new("RGB", (1, 1), (90, 90, 90)), "PNG")), VERDICT),
    "unicode key": Case(lambda c: c.put(c.png, key=f"ünïcødé/{uuid.uuid4().hex}/🚲.png"), "SUCCEEDED"),
    "extra unknown keys": Case(lambda c: {**c.put(c.png), "order": {"id": "ü-1", "items": [1, 2]}}, "SUCCEEDED"),
}


@dataclass
class Context:
    s3: object
    bucket: str
    png: bytes  # a real image the model is confident is a bicycle
    jpeg: bytes
    gray16: np.ndarray

    def put(self, body: bytes, key: str | None = None) -> dict:
        key = key or f"hostile/{uuid.uuid4().hex}"
        if key.endswith(".png"):
            upload_image(self.s3, self.bucket, body, key=key)
        else:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return {"s3_bucket": self.bucket, "s3_key": key}


@dataclass(frozen=True)
class Outcome:
    event: object
    result: ExecutionResult | None
    refused_at_start: str | None = None  # StartExecution's error, when the emulator refused the input itself


@pytest.fixture(autouse=True)
def nothing_left_running(stack):
    """After each test, no execution of the workflow may still be running."""
    yield
    running = boto3.client("stepfunctions").list_executions(
        stateMachineArn=stack["StateMachineArn"], statusFilter="RUNNING"
    )["executions"]
    assert running == [], f"executions left running: {[e['name'] for e in running]}"


@pytest.fixture(scope="module")
def context(stack, test_images) -> Context:
    png = test_images.confident["bicycle"].path.read_bytes()
    rgb = Image.open(io.BytesIO(png)).convert("RGB")
    gray16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return Context(boto3.client("s3"), stack["ImageBucketName"], png, encode(rgb, "JPEG", quality=95), gray16)


def run_one(
    stack: dict, event: object, raw_input: str | None = None, timeout_s: float = EXECUTION_TIMEOUT_S
) -> Outcome:
    """Start an execution on `event` (or on `raw_input`, JSON text our own json cannot write) and wait.
    Straight through boto3, as any client of the state machine may: scones.workflow.execution.start_execution would
    refuse some of these inputs itself (tests/unit/scones/workflow/test_execution_start.py), and the workflow's own
    validation is what is tested here."""
    sfn = boto3.client("stepfunctions")
    try:
        name = f"hostile-{uuid.uuid4().hex}"
        body = json.dumps(event) if raw_input is None else raw_input
        arn = sfn.start_execution(stateMachineArn=stack["StateMachineArn"], name=name, input=body)["executionArn"]
    except ClientError as e:
        return Outcome(event, None, f"{e.response['Error']['Code']}: {e.response['Error'].get('Message', '')}")
    return Outcome(event, wait_for_execution(sfn, arn, timeout_s=timeout_s))


@pytest.fixture(scope="module")
def outcomes(stack, context) -> dict[str, Outcome]:
    events = {name: case.event(context) for name, case in CASES.items()}
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL_EXECUTIONS) as pool:
        futures = {name: pool.submit(run_one, stack, event) for name, event in events.items()}
        results = {name: future.result() for name, future in futures.items()}
    logger.info("%d hostile executions in %.1f s", len(results), time.monotonic() - started)
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_ends_in_its_named_error_or_a_verdict(outcomes, aws_endpoint, case):
    expected, outcome = CASES[case], outcomes[case]
    if expected.on_localstack and not is_ministack(aws_endpoint):
        expected = Case(expected.event, *expected.on_localstack)
    assert outcome.refused_at_start is None, f"StartExecution refused the input: {outcome.refused_at_start}"
    result = outcome.result
    summary = result.summary()
    if expected.expected == "SUCCEEDED":
        assert result.status == "SUCCEEDED", summary
        assert result.label in CLASSES
        carried = {k: v for k, v in outcome.event.items() if k not in ("image_data", "inferences")}
        assert {k: result.output[k] for k in carried} == carried  # unicode key and unknown keys intact
    elif expected.expected == VERDICT:
        # Converted and classified: routed, or refused only because the model is unsure.
        assert result.status == "SUCCEEDED" or result.error_name == "LowConfidenceError", summary
        assert result.status != "SUCCEEDED" or len(result.inferences) == len(CLASSES)
    else:
        assert result.status == "FAILED", summary
        assert result.error_name == expected.expected, summary
        assert result.error in (expected.expected, "Runtime.HandlerError"), summary  # AWS/LocalStack, ministack
        message = result.error_message
        assert message.startswith(f"{expected.expected}: "), summary
        assert expected.mentions in message, summary
        assert "Traceback" not in message and len(message) < 3000


@pytest.mark.parametrize("depth", [2_000, 10_000, 50_000])
def test_json_nested_deeper_than_python_parses_is_refused_or_stopped_never_left_running(stack, aws_endpoint, depth):
    # `scones` refuses these before StartExecution (scones.workflow.execution.start_execution, see
    # tests/unit/scones/workflow/test_execution_start.py). Sent straight to StartExecution, as text since our json
    # cannot even write them (Python parses about 1,000 levels), they never reach our handlers, so no name of ours
    # applies.
    # AWS and LocalStack refuse them, at StartExecution or as a failed execution. ministack 1.5.33 accepts them
    # and the execution never ends (the interpreter's RecursionError is lost): there the deadline's
    # stop_execution must end it, and nothing stays RUNNING.
    try:
        outcome = run_one(stack, None, '{"a":' * depth + "1" + "}" * depth, timeout_s=DEEP_INPUT_TIMEOUT_S)
    except ExecutionTimeoutError as e:
        assert is_ministack(aws_endpoint), f"only ministack leaves this input running: {e}"
        arn = str(e).split(" ")[0]
        assert boto3.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "ABORTED"
        return
    if outcome.refused_at_start is None:
        assert outcome.result.status == "FAILED", outcome.result.summary()


def invoke(stack: dict, function_output: str, event: dict) -> tuple[str | None, dict]:
    response = boto3.client("lambda").invoke(FunctionName=stack[function_output], Payload=json.dumps(event))
    return response.get("FunctionError"), json.loads(response["Payload"].read())


CLASSIFIER_CASES = {
    "not the base64 alphabet": ("!!!!", "InvalidEventError", "base64"),
    "missing padding": ("iVBORw0KGgoAAAANSUhEUgAAAA", "InvalidEventError", "'=' padding is missing"),
    "data: URI prefix": ("data:image/png;base64,iVBORw0KGgo=", "InvalidEventError", "data: URI prefix"),
    "URL-safe alphabet": ("iVBO-w0K_goA", "InvalidEventError", "URL-safe"),
    "line breaks": ("iVBORw0K\nGgoAAAAN", "InvalidEventError", "line breaks"),
    "base64 of a GIF": (base64.b64encode(b"GIF89a\x01\x00\x01\x00").decode(), "NotAnImageError", "GIF"),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
def test_bad_image_data_sent_to_the_classifier_gets_its_named_error(stack, context, case):
    image_data, error, mentions = CLASSIFIER_CASES[case]
    event = {"s3_bucket": context.bucket, "s3_key": "a.png", "image_data": image_data, "inferences": []}
    function_error, payload = invoke(stack, "ClassifyImageFunctionName", event)
    assert function_error, payload
    assert payload.get("errorType") in (error, "Runtime.HandlerError"), payload
    assert payload["errorMessage"].startswith(f"{error}: ") and mentions in payload["errorMessage"], payload
