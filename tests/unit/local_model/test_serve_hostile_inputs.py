"""Hostile input through the real model server (uvicorn on 127.0.0.1): every bad image or body gets its named
JSON error with the right 4xx status, and after each one the same process still answers /ping and a good
request correctly. Also: the accepted formats are one list shared by the server and the Lambdas."""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import zlib
from dataclasses import dataclass

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from lambdas import contract
from local_model import inference
from local_model.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from scones.local.model_server import ModelServer
from tests.helpers.image_samples import encode, jpeg_rgb, png_claiming_size, png_rgba, random_pixels, truncated

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIFTY_MB = 50 * 1024 * 1024
GOOD = png_rgba(seed=42)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_chunk(kind: bytes, data: bytes) -> bytes:
    """GOOD with one more chunk right after IHDR (signature 8 bytes + IHDR 25 bytes)."""
    return GOOD[:33] + _png_chunk(kind, data) + GOOD[33:]


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to claim width x height."""
    body = bytearray(jpeg_rgb(16, 16))
    sof = body.index(b"\xff\xc0")
    body[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(body)


def animated_gif() -> bytes:
    frames = [Image.fromarray(random_pixels(32, 32, 3, seed=s)).quantize(16) for s in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0)


def nested_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass(frozen=True)
class Bad:
    body: bytes | None  # None: FIFTY_MB of zeros after a PNG signature, sent in chunks (built lazily)
    content_type: str | None
    status: int
    error: str
    mentions: str = ""
    accept: str | None = None


# Every way a client can get it wrong, each with the status and named error the server answers.
BAD_INPUTS = {
    "zero bytes": Bad(b"", "image/png", 400, "EmptyBodyError", "empty"),
    "truncated PNG": Bad(truncated(GOOD), "image/png", 400, "InvalidImageError", "truncated"),
    "PNG signature only": Bad(GOOD[:8], "image/png", 400, "InvalidImageError"),
    "truncated JPEG": Bad(truncated(jpeg_rgb(64, 64)), "image/jpeg", 400, "InvalidImageError", "truncated"),
    "corrupt PNG CRC": Bad(GOOD[:40] + bytes(20) + GOOD[60:], "image/png", 400, "InvalidImageError"),
    "PNG bomb 40000x40000": Bad(png_claiming_size(40000, 40000), "image/png", 413, "ImageTooLargeError", "bomb"),
    "PNG bomb 5000x5000": Bad(png_claiming_size(5000, 5000), "image/png", 413, "ImageTooLargeError", "5000x5000"),
    "JPEG bomb 65000x65000": Bad(jpeg_claiming_size(65000, 65000), "image/jpeg", 413, "ImageTooLargeError"),
    "50 MB body": Bad(b"\x89PNG\r\n\x1a\n" + bytes(FIFTY_MB), "image/png", 413, "BodyTooLargeError", "limit"),
    "50 MB chunked body": Bad(None, "image/png", 413, "BodyTooLargeError", "limit"),
    "SVG": Bad(
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"/>',
        "image/png",
        400,
        "InvalidImageError",
        "accepted formats: PNG, JPEG",
    ),
    "GIF": Bad(
        encode(Image.fromarray(random_pixels()).quantize(8), "GIF"), "application/x-image", 400, "InvalidImageError"
    ),
    "animated GIF": Bad(animated_gif(), "application/x-image", 400, "InvalidImageError", "PNG, JPEG"),
    "WEBP": Bad(encode(Image.fromarray(random_pixels()), "WEBP"), "application/x-image", 400, "InvalidImageError"),
    "BMP": Bad(encode(Image.fromarray(random_pixels()), "BMP"), "application/x-image", 400, "InvalidImageError"),
    "TIFF": Bad(encode(Image.fromarray(random_pixels()), "TIFF"), "application/x-image", 400, "InvalidImageError"),
    "PNG with a zTXt bomb": Bad(
        png_with_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * (64 * 1024 * 1024), 9)),
        "image/png",
        400,
        "InvalidImageError",
        "MAX_TEXT_CHUNK",
    ),
    "PNG with an iCCP bomb": Bad(
        png_with_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(64 * 1024 * 1024), 9)),
        "image/png",
        400,
        "InvalidImageError",
    ),
    "wrong content type": Bad(GOOD, "text/plain", 415, "UnsupportedContentTypeError", "image/png"),
    "no content type": Bad(GOOD, None, 415, "UnsupportedContentTypeError", "no Content-Type"),
    "JSON 100 deep": Bad(nested_json(100), "application/json", 415, "UnsupportedContentTypeError"),
    "JSON 10000 deep": Bad(nested_json(10_000), "application/json", 415, "UnsupportedContentTypeError"),
    "JSON sent as an image": Bad(b'{"image": "iVBORw0KGgo="}', "image/png", 400, "InvalidImageError", "JSON"),
    "base64 text of a PNG": Bad(base64.b64encode(GOOD), "image/png", 400, "InvalidImageError", "base64 text"),
    "base64 with line breaks": Bad(base64.encodebytes(GOOD), "image/png", 400, "InvalidImageError", "base64 text"),
    "data: URI": Bad(
        b"data:image/png;base64," + base64.b64encode(GOOD), "image/png", 400, "InvalidImageError", "data: URI"
    ),
    "text that is not base64": Bad(b"%%% not base64 at all %%%", "image/png", 400, "InvalidImageError"),
    "unsupported Accept": Bad(GOOD, "image/png", 406, "UnsupportedAcceptError", "application/json", "text/csv"),
}

# Accepted and converted to 32x32 RGB: the same process answers them with two probabilities.
ACCEPTED_INPUTS = {
    "CMYK JPEG": encode(Image.fromarray(random_pixels(40, 40, 3)).convert("CMYK"), "JPEG"),
    "16-bit grayscale PNG (I;16)": encode(Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)), "PNG"),
    "grayscale PNG": encode(Image.fromarray(random_pixels(32, 32, 1)), "PNG"),
    "RGBA PNG": png_rgba(seed=3),
    "1x1 PNG": encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
    "palette PNG with transparency": encode(Image.fromarray(random_pixels()).quantize(16), "PNG", transparency=0),
    "progressive JPEG": encode(Image.fromarray(random_pixels(48, 48, 3)), "JPEG", progressive=True),
    "12 MP camera JPEG": encode(Image.new("RGB", (4000, 3000), (90, 120, 30)), "JPEG"),
    "PNG with a 2 MB tEXt chunk": png_with_chunk(b"tEXt", b"Comment\x00" + b"a" * (2 * 1024 * 1024)),
    "PNG at the pixel limit": encode(Image.new("RGB", (2048, 2048), (5, 6, 7)), "PNG"),
}


@pytest.fixture(scope="module")
def server(model_dir):
    """One real server with the default limits, shared by every case: it must survive all of them."""
    with ModelServer(model_dir, extra_args=["--no-access-log"]) as running:
        yield running


@pytest.fixture(scope="module")
def expected(model_dir):
    model = inference.model_fn(model_dir)
    return lambda body: inference.predict_fn(inference.input_fn(body, "application/x-image"), model)[0].tolist()


def connect(server) -> http.client.HTTPConnection:
    host, port = server.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


def send(connection, body, content_type, accept=None, path="/invocations"):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    if accept:
        headers["Accept"] = accept
    if body is None:  # chunked: no Content-Length for the server to refuse up front
        chunks = (bytes(1024 * 1024) for _ in range(FIFTY_MB // (1024 * 1024)))
        connection.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
    else:
        connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    return response, response.read()


def assert_still_serving(server, expected, connection=None):
    """/ping and a good request succeed (on `connection` if the server kept it open), and the process lives."""
    assert server.running, "the model server process died"
    connection = connection or connect(server)
    try:
        connection.request("GET", "/ping")
        ping = connection.getresponse()
        assert (ping.status, json.loads(ping.read())) == (200, {"status": "healthy", "model_version": 1, "reloads": 0})
        response, payload = send(connection, GOOD, "image/png")
        assert response.status == 200, payload
        assert json.loads(payload) == pytest.approx(expected(GOOD), abs=1e-6)
    finally:
        connection.close()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_named_error_and_the_server_keeps_serving(server, expected, case):
    bad = BAD_INPUTS[case]
    connection = connect(server)
    response, payload = send(connection, bad.body, bad.content_type, bad.accept)
    assert response.status == bad.status, payload[:500]
    assert response.getheader("Content-Type") == "application/json"
    error = json.loads(payload)
    assert error["error"] == bad.error, error
    assert bad.mentions in error["message"], error
    assert len(error["message"]) < 1000  # no echo of the body
    # A keep-alive connection stays usable after an error, unless the server said it closes it.
    kept = connection if response.getheader("Connection", "").lower() != "close" else None
    if kept is None:
        connection.close()
    assert_still_serving(server, expected, kept)


@pytest.mark.parametrize("case", list(ACCEPTED_INPUTS))
def test_accepted_input_is_converted_and_answered(server, expected, case):
    body = ACCEPTED_INPUTS[case]
    connection = connect(server)
    response, payload = send(connection, body, "application/x-image")
    connection.close()
    assert response.status == 200, payload
    assert json.loads(payload) == pytest.approx(expected(body), abs=1e-6)
    assert sum(json.loads(payload)) == pytest.approx(1.0, abs=1e-6)
    assert_still_serving(server, expected)


@pytest.fixture(scope="module")
def runtime(server):
    """boto3's sagemaker-runtime client, as the classifier Lambda uses it, pointed at the server."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_PROFILE", raising=False)
        yield boto3.client("sagemaker-runtime", config=Config(retries={"max_attempts": 1}, read_timeout=60))


@pytest.mark.parametrize("case", [c for c, bad in BAD_INPUTS.items() if bad.body is not None])
def test_bad_input_through_the_runtime_api_is_a_model_error_naming_the_cause(server, runtime, expected, case):
    bad = BAD_INPUTS[case]
    kwargs = {"ContentType": bad.content_type} if bad.content_type else {}
    if bad.accept:
        kwargs["Accept"] = bad.accept
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName=server.endpoint_name, Body=bad.body, **kwargs)
    response = raised.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("ModelError", 424)
    assert response["OriginalStatusCode"] == bad.status
    assert json.loads(response["OriginalMessage"])["error"] == bad.error
    assert_still_serving(server, expected)


def test_the_limits_are_the_documented_defaults():
    # The cases above rely on them: a 50 MB body is over the body limit, 2048x2048 is at the pixel limit.
    assert DEFAULT_MAX_BODY_BYTES == 6 * 1024 * 1024 < FIFTY_MB
    assert DEFAULT_MAX_IMAGE_PIXELS == 2048 * 2048


def test_the_server_and_the_lambdas_accept_the_same_formats():
    # One list (lambdas/contract.py IMAGE_FORMATS); the container cannot import it, so it is checked here.
    assert set(inference.ACCEPTED_IMAGE_FORMATS) == set(contract.IMAGE_FORMATS)
    content_types = {content_type for content_type, _ in contract.IMAGE_FORMATS.values()}
    assert content_types <= set(inference.SUPPORTED_CONTENT_TYPES)
    checked = set()
    for case, body in {**{c: b.body for c, b in BAD_INPUTS.items()}, **ACCEPTED_INPUTS}.items():
        real_format = _format_pillow_opens(body or b"")
        if real_format is None:
            continue  # not an image at all, or a corrupt one: the Lambdas check signatures, the server decodes
        try:
            lambda_accepts = bool(contract.image_content_type(body))
        except contract.NotAnImageError:
            lambda_accepts = False
        # An image the Lambdas let through is one the server decodes, and the other way round.
        assert lambda_accepts == (real_format in ("PNG", "JPEG", "MPO")), case
        checked.add(real_format)
    assert {"PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"} <= checked


def _format_pillow_opens(body: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(body)) as image:  # every plugin: what the bytes really are
            return image.format
    except Exception:
        return None
