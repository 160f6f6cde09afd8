"""Property-based tests (hypothesis) of the event validation in lambdas/contract.py: whatever JSON arrives,
only the contract's named errors come out; valid events pass and survive a JSON round trip through every
stage; each field's rule agrees with an independent statement of it (S3's naming rules, strict base64).

Deterministic in CI: derandomize=True (examples derived from each test's source, the same on every run) and
no example database (nothing carried between runs or machines). Budgets are set per test (about 0.1-0.5 s)."""

from __future__ import annotations

import base64
import binascii
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdas import contract, filter_low_confidence, serialize_image_data
from lambdas.contract import InvalidEventError, LowConfidenceError

PROPERTIES = settings(
    derandomize=True, database=None, deadline=500, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
SCHEMAS = list(contract.SCHEMAS.values())
MAX_MESSAGE_CHARS = 3000  # an error message stays readable (and far below Step Functions' 32 KiB cause)

# Any text, lone surrogates included (json.loads produces them from "\ud800").
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=30,
)


def assert_only_named_errors(event: object, schema: dict) -> object:
    """Validate; anything but InvalidEventError with a bounded 'InvalidEventError: ' message fails the test."""
    try:
        return contract.validate_event(event, schema)
    except InvalidEventError as e:
        message = str(e)
        assert message.startswith(f"InvalidEventError: {schema['title']}: ")
        assert len(message) < MAX_MESSAGE_CHARS
        return e


# --- Arbitrary input: only named errors ------------------------------------------------------


@PROPERTIES
@given(event=json_values, schema=st.sampled_from(SCHEMAS))
def test_any_json_value_passes_or_raises_invalid_event_error(event, schema):
    result = assert_only_named_errors(event, schema)
    if not isinstance(result, InvalidEventError):
        assert result is event and isinstance(event, dict)


@PROPERTIES
@given(
    field=st.sampled_from(["s3_bucket", "s3_key", "image_data", "inferences"]),
    value=json_values,
    schema=st.sampled_from(SCHEMAS),
)
def test_any_value_in_any_field_of_a_valid_event_passes_or_raises_invalid_event_error(field, value, schema):
    event = {**json.loads(json.dumps(VALID_FILTER_EVENT)), field: value}
    assert_only_named_errors(event, schema)


@settings(PROPERTIES, max_examples=30)
@given(depth=st.integers(1, 20_000), schema=st.sampled_from(SCHEMAS), as_list=st.booleans())
def test_nesting_of_any_depth_is_measured_without_recursion_and_refused_past_the_limit(depth, schema, as_list):
    value: object = 1
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    assert contract.json_depth(value) == min(depth, contract.MAX_EVENT_DEPTH + 1)
    event = {**VALID_EVENTS[schema["title"]], "carried": value}
    if depth + 1 > contract.MAX_EVENT_DEPTH:  # the event object itself is one level
        with pytest.raises(InvalidEventError, match="nests more than 32 levels"):
            contract.validate_event(event, schema)
    else:
        assert contract.validate_event(event, schema) is event


# --- Valid events: pass, and round-trip through every stage ----------------------------------


def _label():
    return st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20).filter(
        lambda s: s[0] != "-" and s[-1] != "-"
    )


valid_buckets = (
    st.lists(_label(), min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda name: 3 <= len(name) <= 63 and is_valid_bucket(name))
)
valid_keys = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=300).filter(
    lambda key: len(key.encode()) <= 1024 and not set(key.split("/")) & {".", ".."}
)
valid_image_data = st.binary(min_size=1, max_size=300).map(lambda data: base64.b64encode(data).decode())
probabilities = st.floats(0, 1, allow_nan=False)
valid_inferences = st.lists(probabilities, min_size=2, max_size=2)
extra_keys = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k not in ("s3_bucket", "s3_key", "image_data", "inferences")),
    st.recursive(st.none() | st.integers() | st.text(max_size=10), lambda x: st.lists(x, max_size=3), max_leaves=5),
    max_size=3,
)
VALID_FILTER_EVENT = json.loads(
    '{"s3_bucket": "scones-images", "s3_key": "images/a.png", "image_data": "iVBORw0KGgo=", "inferences": [0.9, 0.1]}'
)
VALID_EVENTS = {
    contract.SERIALIZE_INPUT_SCHEMA["title"]: {**VALID_FILTER_EVENT, "image_data": "", "inferences": []},
    contract.CLASSIFY_INPUT_SCHEMA["title"]: {**VALID_FILTER_EVENT, "inferences": []},
    contract.FILTER_INPUT_SCHEMA["title"]: VALID_FILTER_EVENT,
}


@PROPERTIES
@given(bucket=valid_buckets, key=valid_keys, extra=extra_keys, image=st.binary(min_size=1, max_size=300))
def test_a_valid_event_passes_every_stage_and_survives_json_round_trips(bucket, key, extra, image):
    event = {**extra, "s3_bucket": bucket, "s3_key": key}
    assert contract.validate_event(event, contract.SERIALIZE_INPUT_SCHEMA) is event
    serialized = serialize_image_data.serialize_image(json.loads(json.dumps(event)), image)
    # What the serializer passes on is what the classifier accepts, after Step Functions' JSON hop.
    hop = json.loads(json.dumps(serialized))
    assert contract.validate_event(hop, contract.CLASSIFY_INPUT_SCHEMA) == serialized
    assert base64.b64decode(hop["image_data"]) == image
    classified = json.loads(json.dumps({**hop, "inferences": [0.25, 0.75]}))
    assert contract.validate_event(classified, contract.FILTER_INPUT_SCHEMA) == {
        **serialized,
        "inferences": [0.25, 0.75],
    }
    assert {k: classified[k] for k in extra} == extra  # unknown keys carried along unchanged


@PROPERTIES
@given(
    bucket=valid_buckets,
    key=valid_keys,
    image_data=valid_image_data,
    inferences=valid_inferences,
    threshold=probabilities,
)
def test_the_filter_on_a_valid_event_passes_it_or_raises_low_confidence(
    bucket, key, image_data, inferences, threshold, monkeypatch_module
):
    monkeypatch_module.setenv(contract.ENV_CONFIDENCE_THRESHOLD, repr(threshold))
    event = {"s3_bucket": bucket, "s3_key": key, "image_data": image_data, "inferences": inferences}
    try:
        assert filter_low_confidence.handler(event, None) is event
        assert max(inferences) >= threshold
    except LowConfidenceError as e:
        assert max(inferences) < threshold and str(e).startswith("LowConfidenceError: top score")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@PROPERTIES
@given(bucket=valid_buckets, key=valid_keys, status=st.integers(100, 599), as_string=st.booleans())
def test_the_courses_status_code_body_wrapper_is_named_with_how_to_send_it(bucket, key, status, as_string):
    inner = {"s3_bucket": bucket, "s3_key": key}
    wrapped = {"statusCode": status, "body": json.dumps(inner) if as_string else inner}
    with pytest.raises(InvalidEventError) as raised:
        contract.validate_event(wrapped, contract.SERIALIZE_INPUT_SCHEMA)
    message = str(raised.value)
    assert "were found under `body`" in message and "Send the object in `body` itself" in message
    assert contract.validate_event(
        json.loads(wrapped["body"]) if as_string else wrapped["body"], contract.SERIALIZE_INPUT_SCHEMA
    )


# --- Each field against an independent statement of its rule --------------------------------


def is_valid_bucket(name: str) -> bool:
    """S3's general purpose bucket naming rules, written out without a regular expression."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    parts = name.split(".")
    looks_like_ip = len(parts) == 4 and all(p.isascii() and p.isdigit() and 1 <= len(p) <= 3 for p in parts)
    return (
        3 <= len(name) <= 63
        and set(name) <= allowed
        and name[0].isalnum()
        and name[-1].isalnum()
        and ".." not in name
        and not looks_like_ip
        and not name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        and not name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
    )


def is_valid_key(key: str) -> bool:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    no_controls = all(ord(c) >= 0x20 and c != "\x7f" for c in key)
    return 1 <= size <= 1024 and no_controls and not set(key.split("/")) & {".", ".."}


def is_valid_base64(text: str) -> bool:
    """Strict standard base64, padded exactly: what base64.b64encode produces (any final bits)."""
    try:
        decoded = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return len(text) >= 4 and len(base64.b64encode(decoded)) == len(text)


bucket_like = st.text("abcxyz019.-_A", min_size=0, max_size=70) | st.sampled_from(
    ["192.168.1.1", "xn--abc", "sthree-x", "my-s3alias", "a--ol-s3", "abc.mrap", "a..b", "ab", "a" * 64, "10.0.0.256"]
)
key_like = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["../../etc/passwd", "a/./b", ".", "..", "a/..", "./a", "...", "a..b", "ünïcødé/🚲.png", "a\x00b", "🚲" * 257]
)
base64_like = st.text("ABCabc019+/=-_ \n:", max_size=16) | st.binary(max_size=12).map(
    lambda b: base64.b64encode(b).decode()
)


def _accepted(schema_field: dict, value: object) -> bool:
    return not contract.schema_problems(value, schema_field, "value")


@PROPERTIES
@given(name=bucket_like)
def test_bucket_names_follow_s3s_rules(name):
    assert _accepted(contract.CLASSIFY_INPUT_SCHEMA["properties"]["s3_bucket"], name) == is_valid_bucket(name)


@PROPERTIES
@given(key=key_like)
def test_keys_are_utf8_up_to_1024_bytes_without_controls_or_dot_segments(key):
    assert _accepted(contract.CLASSIFY_INPUT_SCHEMA["properties"]["s3_key"], key) == is_valid_key(key)


@settings(PROPERTIES, max_examples=300)
@given(text=base64_like)
def test_image_data_is_exactly_padded_standard_base64(text):
    accepted = _accepted(contract.CLASSIFY_INPUT_SCHEMA["properties"]["image_data"], text)
    assert accepted == is_valid_base64(text)
    if accepted:
        assert base64.b64decode(text, validate=True)  # what the classifier then does cannot fail


@PROPERTIES
@given(inferences=json_values | st.lists(st.floats() | st.integers() | st.booleans(), max_size=3))
def test_inferences_are_two_numbers_in_0_1(inferences):
    expected = (
        isinstance(inferences, list)
        and len(inferences) == 2
        and all(isinstance(p, int | float) and not isinstance(p, bool) and not math.isnan(p) for p in inferences)
        and all(0 <= p <= 1 for p in inferences)
    )
    assert _accepted(contract.FILTER_INPUT_SCHEMA["properties"]["inferences"], inferences) == expected


@PROPERTIES
@given(data=st.binary(max_size=64))
def test_image_content_type_accepts_exactly_the_listed_signatures(data):
    signatures = {sig: content_type for content_type, sigs in contract.IMAGE_FORMATS.values() for sig in sigs}
    expected = next((content_type for sig, content_type in signatures.items() if data.startswith(sig)), None)
    try:
        assert contract.image_content_type(data) == expected
    except contract.NotAnImageError as e:
        assert expected is None and str(e).startswith("NotAnImageError: the image is ")
