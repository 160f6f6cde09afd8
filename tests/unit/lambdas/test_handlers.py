"""Unit tests of the three handlers and the event contract: no network (moto and botocore's Stubber). One
module of about 460 lines because the handlers share the contract's events and fixtures; split by handler,
each part would repeat them."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path

import boto3
import jsonschema
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from cfnlint.decode import cfn_yaml
from conftest import use_offline_aws
from moto import mock_aws

from lambdas import classify_image, clients, contract, filter_low_confidence, serialize_image_data
from lambdas.contract import (
    BucketNotFoundError,
    ConfigurationError,
    EndpointError,
    EndpointUnavailableError,
    ImageAccessDeniedError,
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidEventError,
    LowConfidenceError,
    NotAnImageError,
)

ROOT = Path(__file__).resolve().parents[3]
EVENTS_DIR = ROOT / "tests" / "events"
PNG = base64.b64decode(json.loads((EVENTS_DIR / "classify_image.json").read_text())["image_data"])
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
BUCKET = "scones-unit-images"


def load_event(name: str) -> dict:
    return json.loads((EVENTS_DIR / name).read_text())


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    """Dummy credentials and region, no emulator endpoint, and fresh cached clients per test."""
    use_offline_aws(monkeypatch, "us-east-1")
    clients.s3_client.cache_clear()
    clients.sagemaker_runtime_client.cache_clear()
    yield
    clients.s3_client.cache_clear()
    clients.sagemaker_runtime_client.cache_clear()


# --- Contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_file", "stage"),
    [
        ("serialize_image_data.json", "serialize_image_data"),
        ("classify_image.json", "classify_image"),
        ("filter_low_confidence.json", "filter_low_confidence"),
        ("low_confidence.json", "filter_low_confidence"),
    ],
)
def test_example_events_fit_their_stage_schema(event_file, stage):
    event, schema = load_event(event_file), contract.SCHEMAS[stage]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(event, schema)
    assert contract.validate_event(event, schema) == event


BAD_EVENTS = [
    ("not an object", ["x"]),
    ("missing bucket", {"s3_key": "a.png"}),
    ("missing key", {"s3_bucket": "bucket"}),
    ("number bucket", {"s3_bucket": 42, "s3_key": "a.png"}),
    ("upper-case bucket", {"s3_bucket": "Bucket", "s3_key": "a.png"}),
    ("empty key", {"s3_bucket": "bucket", "s3_key": ""}),
    ("stale image_data", {"s3_bucket": "bucket", "s3_key": "a.png", "image_data": "abcd"}),
]


@pytest.mark.parametrize(("why", "event"), BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS])
def test_schema_problems_agree_with_json_schema(why, event):
    schema = contract.SERIALIZE_INPUT_SCHEMA
    assert contract.schema_problems(event, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schema)


@pytest.mark.parametrize(
    "inferences",
    [[0.5], [0.5, 0.5, 0.0], [1.2, -0.2], ["0.9", "0.1"], [True, False], None],
    ids=["one", "three", "out of range", "strings", "booleans", "null"],
)
def test_filter_schema_rejects_malformed_inferences(inferences):
    event = {**load_event("filter_low_confidence.json"), "inferences": inferences}
    with pytest.raises(InvalidEventError, match=r"^InvalidEventError: filter_low_confidence input: event\.inferences"):
        contract.validate_event(event, contract.FILTER_INPUT_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, contract.FILTER_INPUT_SCHEMA)


def test_invalid_event_error_names_every_problem():
    with pytest.raises(InvalidEventError) as raised:
        contract.validate_event({"s3_bucket": 7}, contract.SERIALIZE_INPUT_SCHEMA)
    assert "event.s3_key is missing" in str(raised.value)
    assert "event.s3_bucket must be a JSON string, got number" in str(raised.value)


def every_subclass(base: type) -> set[type]:
    found = set(base.__subclasses__())
    return found.union(*(every_subclass(c) for c in found)) if found else found


def test_error_messages_start_with_the_error_name():
    # Emulators that report every Lambda failure as Runtime.HandlerError keep only the message.
    errors = every_subclass(contract.WorkflowError)
    named = {LowConfidenceError, InvalidEventError, ImageTooLargeError, EndpointError, EndpointUnavailableError}
    assert named <= errors
    for error in errors:
        assert str(error("the detail")) == f"{error.__name__}: the detail"


def test_image_content_type_by_signature():
    assert contract.image_content_type(PNG) == "image/png"
    assert contract.image_content_type(JPEG_HEAD) == "image/jpeg"
    with pytest.raises(NotAnImageError):
        contract.image_content_type(b"GIF89a...")
    with pytest.raises(NotAnImageError):
        contract.image_content_type(b"")


# --- serialize_image_data ----------------------------------------------------------------------


@pytest.fixture
def s3_bucket():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def test_serialize_reads_the_image_into_the_event(s3_bucket, caplog):
    s3_bucket.put_object(Bucket=BUCKET, Key="images/bike.png", Body=PNG)
    event = {**load_event("serialize_image_data.json"), "s3_bucket": BUCKET, "s3_key": "images/bike.png"}
    with caplog.at_level(logging.INFO):
        output = serialize_image_data.handler(event, None)
    assert output == {**event, "image_data": base64.b64encode(PNG).decode(), "inferences": []}
    jsonschema.validate(output, contract.CLASSIFY_INPUT_SCHEMA)
    assert output["image_data"] not in caplog.text  # never log image bytes


def test_serialize_carries_unknown_keys_along(s3_bucket):
    s3_bucket.put_object(Bucket=BUCKET, Key="a.png", Body=PNG)
    output = serialize_image_data.handler({"s3_bucket": BUCKET, "s3_key": "a.png", "request_id": "r-1"}, None)
    assert output["request_id"] == "r-1"


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"s3_key": "a.png"}, InvalidEventError),
        ({"s3_bucket": "scones-no-such-bucket", "s3_key": "a.png"}, BucketNotFoundError),
        ({"s3_bucket": BUCKET, "s3_key": "missing.png"}, ImageNotFoundError),
        ({"s3_bucket": BUCKET, "s3_key": "note.txt"}, NotAnImageError),
    ],
    ids=["missing key", "missing bucket", "missing object", "not an image"],
)
def test_serialize_bad_inputs_raise_named_errors(s3_bucket, event, error):
    s3_bucket.put_object(Bucket=BUCKET, Key="note.txt", Body=b"not an image")
    with pytest.raises(error, match=f"^{error.__name__}: "):
        serialize_image_data.handler(event, None)


def test_serialize_refuses_an_image_too_large_for_the_state_payload_without_reading_it(s3_bucket):
    largest = contract.MAX_EVENT_BYTES * 3 // 4
    s3_bucket.put_object(Bucket=BUCKET, Key="big.png", Body=PNG + bytes(largest))
    with pytest.raises(ImageTooLargeError, match="256 KiB"):
        serialize_image_data.handler({"s3_bucket": BUCKET, "s3_key": "big.png"}, None)


def test_serialize_counts_the_keys_carried_along_against_the_limit(s3_bucket):
    s3_bucket.put_object(Bucket=BUCKET, Key="a.png", Body=PNG)
    event = {"s3_bucket": BUCKET, "s3_key": "a.png", "note": "x" * contract.MAX_EVENT_BYTES}
    with pytest.raises(ImageTooLargeError, match="would be"):
        serialize_image_data.handler(event, None)


def test_serialize_accepts_the_largest_image_that_fits(s3_bucket):
    image = PNG + bytes(contract.MAX_EVENT_BYTES * 3 // 4 - len(PNG) - 300)
    s3_bucket.put_object(Bucket=BUCKET, Key="fits.png", Body=image)
    output = serialize_image_data.handler({"s3_bucket": BUCKET, "s3_key": "fits.png"}, None)
    assert len(json.dumps(output).encode()) <= contract.MAX_EVENT_BYTES


def test_serialize_maps_access_denied_to_a_named_error():
    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
        with pytest.raises(ImageAccessDeniedError, match=re.escape("s3://other-bucket/a.png")):
            serialize_image_data.read_image(s3, "other-bucket", "a.png")


# --- classify_image ----------------------------------------------------------------------------


ENDPOINT = "scones-unit-endpoint"


@pytest.fixture
def runtime(monkeypatch):
    """The handler's sagemaker-runtime client, stubbed."""
    monkeypatch.setenv(contract.ENV_MODEL_ENDPOINT_NAME, ENDPOINT)
    client = clients.sagemaker_runtime_client()
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def answer(body: bytes) -> dict:
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


def test_classify_adds_the_endpoints_probabilities(runtime, caplog):
    event = load_event("classify_image.json")
    runtime.add_response(
        "invoke_endpoint",
        answer(b"[0.25, 0.75]"),
        {"EndpointName": ENDPOINT, "ContentType": "image/png", "Accept": "application/json", "Body": PNG},
    )
    with caplog.at_level(logging.INFO):
        output = classify_image.handler(event, None)
    assert output == {**event, "inferences": [0.25, 0.75]}
    assert event["image_data"] not in caplog.text


def test_classify_needs_the_endpoint_name(monkeypatch):
    monkeypatch.delenv(contract.ENV_MODEL_ENDPOINT_NAME, raising=False)
    with pytest.raises(ConfigurationError, match=contract.ENV_MODEL_ENDPOINT_NAME):
        classify_image.handler(load_event("classify_image.json"), None)


@pytest.mark.parametrize(
    ("image_data", "error"),
    [("!!!!", InvalidEventError), ("abcde", InvalidEventError), (base64.b64encode(b"text").decode(), NotAnImageError)],
    ids=["not base64 alphabet", "bad padding", "not an image"],
)
def test_classify_rejects_bad_image_data(runtime, image_data, error):
    with pytest.raises(error):
        classify_image.handler({**load_event("classify_image.json"), "image_data": image_data}, None)


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ModelError", 424, EndpointError),
        ("ValidationError", 400, EndpointError),
        ("ThrottlingException", 400, EndpointUnavailableError),
        ("ModelNotReadyException", 429, EndpointUnavailableError),
        ("ServiceUnavailable", 503, EndpointUnavailableError),
        ("InternalFailure", 500, EndpointUnavailableError),
    ],
)
def test_classify_names_endpoint_errors_transient_or_not(runtime, code, status, error):
    runtime.add_client_error("invoke_endpoint", code, "the endpoint says no", status)
    with pytest.raises(error, match=f"{ENDPOINT}.*{code}") as raised:
        classify_image.handler(load_event("classify_image.json"), None)
    assert type(raised.value) is error  # EndpointUnavailableError is what the state machine retries


@pytest.mark.parametrize(
    "body", [b"not json", b'{"predictions": [0.1]}', b"[0.3]", b"[2.0, -1.0]", b'["a", "b"]'], ids=repr
)
def test_classify_rejects_answers_that_are_not_two_probabilities(runtime, body):
    runtime.add_response("invoke_endpoint", answer(body))
    with pytest.raises(EndpointError, match=ENDPOINT):
        classify_image.handler(load_event("classify_image.json"), None)


class UnreachableRuntime:
    def __init__(self, error: Exception):
        self.error = error

    def invoke_endpoint(self, **kwargs):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ReadTimeoutError(endpoint_url="http://x")],
    ids=["connection refused", "read timeout"],
)
def test_classify_reports_an_unreachable_endpoint_as_transient(error):
    with pytest.raises(EndpointUnavailableError, match="could not be reached"):
        classify_image.invoke_endpoint(UnreachableRuntime(error), ENDPOINT, PNG)


# --- filter_low_confidence ---------------------------------------------------------------------


def test_filter_passes_a_confident_event_unchanged(monkeypatch):
    monkeypatch.delenv(contract.ENV_CONFIDENCE_THRESHOLD, raising=False)
    event = load_event("filter_low_confidence.json")
    assert filter_low_confidence.handler(event, None) == event


def test_filter_raises_low_confidence_with_the_scores(monkeypatch):
    monkeypatch.delenv(contract.ENV_CONFIDENCE_THRESHOLD, raising=False)
    with pytest.raises(LowConfidenceError) as raised:
        filter_low_confidence.handler(load_event("low_confidence.json"), None)
    assert str(raised.value) == (
        "LowConfidenceError: top score 0.6125 is below the threshold 0.93 (bicycle 0.6125, motorcycle 0.3875)"
    )


def test_filter_threshold_comes_from_the_environment_at_call_time(monkeypatch):
    monkeypatch.setenv(contract.ENV_CONFIDENCE_THRESHOLD, "0.6")
    event = load_event("low_confidence.json")
    assert filter_low_confidence.handler(event, None) == event
    monkeypatch.setenv(contract.ENV_CONFIDENCE_THRESHOLD, "0.99")
    with pytest.raises(LowConfidenceError):
        filter_low_confidence.handler(load_event("filter_low_confidence.json"), None)


def test_filter_threshold_is_inclusive():
    assert filter_low_confidence.check_confidence([0.93, 0.07], 0.93) == "bicycle"
    assert filter_low_confidence.check_confidence([0.05, 0.95], 0.93) == "motorcycle"


@pytest.mark.parametrize("raw", ["high", "1.5", "-0.1"])
def test_filter_rejects_a_bad_threshold(monkeypatch, raw):
    monkeypatch.setenv(contract.ENV_CONFIDENCE_THRESHOLD, raw)
    with pytest.raises(ConfigurationError, match=contract.ENV_CONFIDENCE_THRESHOLD):
        filter_low_confidence.handler(load_event("filter_low_confidence.json"), None)


# --- Hostile events through the handlers (the properties of the validation: test_contract_properties.py) ---


def test_the_courses_wrapper_says_where_the_keys_are_and_how_to_send_them(s3_bucket):
    with pytest.raises(InvalidEventError) as raised:
        serialize_image_data.handler(load_event("course_wrapper.json"), None)
    message = str(raised.value)
    assert "The keys s3_bucket, s3_key were found under `body`" in message
    assert "Send the object in `body` itself as the input" in message


def test_inferences_as_a_json_string_say_to_send_the_list():
    """The course's classifier returns json.dumps(inferences); our filter takes the list."""
    event = load_event("filter_low_confidence.json")
    event["inferences"] = json.dumps(event["inferences"])
    with pytest.raises(InvalidEventError) as raised:
        filter_low_confidence.handler(event, None)
    assert "event.inferences must be a JSON array, got string" in str(raised.value)
    assert "is a JSON string holding a list" in str(raised.value) and "send the list itself" in str(raised.value)


def test_the_courses_classifier_output_into_our_filter_says_where_the_keys_are():
    """The course's classify step answers {"statusCode": 200, "body": json.dumps(event)}."""
    inner = load_event("filter_low_confidence.json")
    with pytest.raises(InvalidEventError) as raised:
        filter_low_confidence.handler({"statusCode": 200, "body": json.dumps(inner)}, None)
    message = str(raised.value)
    assert "were found under `body` (as a JSON string)" in message and "Send the object in `body` itself" in message


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "images/../../secret.png", "./a.png", "a/.", "a\x00.png", "a\n.png", "\ud800.png"]
)
def test_serialize_refuses_traversal_and_control_keys_before_calling_s3(key):
    # The handler's own client, with no response queued: any S3 call would fail the test.
    with Stubber(clients.s3_client()), pytest.raises(InvalidEventError, match=r"event\.s3_key"):
        serialize_image_data.handler({"s3_bucket": BUCKET, "s3_key": key}, None)


def test_serialize_reads_a_unicode_key(s3_bucket):
    key = "ünïcødé/🚲.png"
    s3_bucket.put_object(Bucket=BUCKET, Key=key, Body=PNG)
    assert serialize_image_data.handler({"s3_bucket": BUCKET, "s3_key": key}, None)["s3_key"] == key


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"", "is empty (0 bytes)"),
        (b"GIF89a\x01\x00\x01\x00", "is a GIF file"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "is a WEBP file"),
        (b'<?xml version="1.0"?><svg/>', "is an SVG (XML) file"),
        (b"%PDF-1.7", "is a PDF file"),
        (b"a delivery note", "is not a PNG or JPEG image"),
    ],
    ids=["zero bytes", "GIF", "WEBP", "SVG", "PDF", "text"],
)
def test_serialize_names_what_a_refused_object_is(s3_bucket, body, mentions):
    s3_bucket.put_object(Bucket=BUCKET, Key="object", Body=body)
    with pytest.raises(NotAnImageError, match=f"^NotAnImageError: s3://{BUCKET}/object {re.escape(mentions)}"):
        serialize_image_data.handler({"s3_bucket": BUCKET, "s3_key": "object"}, None)


def test_deeply_nested_events_are_refused_without_recursion():
    deep: object = 1
    for _ in range(100_000):
        deep = {"a": deep}
    with pytest.raises(InvalidEventError, match="nests more than 32 levels"):
        filter_low_confidence.handler({**load_event("filter_low_confidence.json"), "extra": deep}, None)


def test_classify_names_the_model_servers_own_error(runtime):
    original = {"error": "InvalidImageError", "message": "image data is truncated or corrupt"}
    runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        "Received client error (400) from primary with message ...",
        424,
        modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": json.dumps(original)},
    )
    with pytest.raises(EndpointError) as raised:
        classify_image.handler(load_event("classify_image.json"), None)
    assert str(raised.value) == (
        f"EndpointError: endpoint '{ENDPOINT}' answered 424 ModelError: the model server refused the image: "
        "InvalidImageError: image data is truncated or corrupt"
    )


def worst_case_s(config) -> float:
    """How long a client call can take with `config`: every attempt's connect + read, and the backoff."""
    attempts = config.retries["total_max_attempts"]
    return attempts * (config.connect_timeout + config.read_timeout) + clients.MAX_BACKOFF_S


@pytest.mark.parametrize(
    ("function", "client_of"),
    [
        ("SerializeImageDataFunction", lambda timeout_s: clients.s3_client()),
        ("ClassifyImageFunction", clients.sagemaker_runtime_client_within),
    ],
)
def test_every_client_call_ends_before_its_functions_timeout(function, client_of, monkeypatch):
    """A stuck service must end in the handler's named error, not in the platform killing the function:
    the clients the handlers really use, against the Timeout the template gives each function."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # clients are built, nothing is called
    timeout_s = cfn_yaml.load(str(ROOT / "cloud" / "template.yaml"))["Resources"][function]["Properties"]["Timeout"]
    config = client_of(timeout_s).meta.config
    assert config.retries["total_max_attempts"] == clients.MAX_ATTEMPTS  # the first call included
    assert worst_case_s(config) + clients.DEADLINE_MARGIN_S <= timeout_s, (function, worst_case_s(config), timeout_s)


@pytest.mark.parametrize("remaining_s", [60, 30, 15, 13])  # below 13 s even 1 s reads cannot fit
def test_the_endpoint_read_timeout_shrinks_with_the_time_left(remaining_s, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = clients.sagemaker_runtime_client_within(remaining_s).meta.config
    assert config.read_timeout == clients.read_timeout_within(remaining_s) <= clients.READ_TIMEOUT_S
    assert worst_case_s(config) + clients.DEADLINE_MARGIN_S <= remaining_s
