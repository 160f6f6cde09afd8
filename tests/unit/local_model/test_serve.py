"""Tests of the model server: real HTTP through uvicorn for the main paths and boto3, TestClient for bad input.
One module of about 500 lines for one server, whose running-server fixtures every test shares (stress and
hostile inputs have their own: test_serve_stress.py, test_hostile_inputs.py)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import random
import threading

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import use_offline_aws
from moto import mock_aws
from PIL import Image
from starlette.testclient import TestClient

from cloud import deploy
from local_model import inference, serve
from local_model.capture_reader import read_captured_inferences
from local_model.settings import DEFAULT_ENDPOINT_NAME, SettingsError, read_serve_settings
from scones.local.model_server import ModelServer
from tests.helpers.image_samples import encode, jpeg_rgb, png_claiming_size, png_rgba, random_pixels, truncated

MAX_BODY_BYTES = 1_000_000  # small, so the 413 cases stay cheap
SERVED = DEFAULT_ENDPOINT_NAME  # the endpoint a server serves unless SCONES_ENDPOINT_NAME names another


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def expected(model_dir):
    """What the server must answer for an image body, computed in-process."""
    model = inference.model_fn(model_dir)

    def predict(body: bytes, content_type: str = "image/png") -> list[float]:
        return inference.predict_fn(inference.input_fn(body, content_type), model)[0].tolist()

    return predict


def settings_for(model_dir, **env):
    return read_serve_settings(
        {"SCONES_MODEL_DIR": str(model_dir), "SCONES_MAX_BODY_BYTES": str(MAX_BODY_BYTES), **env}
    )


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(serve.create_app(settings_for(model_dir)), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client, body, content_type="image/png", path="/invocations", **headers):
    headers = {"Content-Type": content_type, **headers} if content_type is not None else headers
    return client.post(path, content=body, headers=headers)


def assert_named_error(response, status: int, error: str, mentions: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["error"] == error
    assert mentions in payload["message"]
    return payload


# The happy path in-process


def test_ping_is_healthy_once_the_model_is_loaded(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.json() == {"status": "healthy", "model_version": 1, "reloads": 0}


def test_invocations_answer_the_bicycle_motorcycle_pair(client, expected):
    body = png_rgba(seed=7)
    response = post(client, body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == pytest.approx(expected(body), abs=1e-6)
    assert sum(response.json()) == pytest.approx(1.0, abs=1e-6)


@pytest.fixture
def decoded_on(monkeypatch):
    """Where each request's image was decoded and scored: "event loop" or "worker thread"."""
    places = []
    original = serve.answer

    def observed(*args, **kwargs):
        places.append("event loop" if asyncio_loop_running() else "worker thread")
        return original(*args, **kwargs)

    monkeypatch.setattr(serve, "answer", observed)
    return places


def asyncio_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_every_image_is_decoded_off_the_event_loop_and_answered(client, expected, decoded_on):
    small, photo, declares_many_pixels = png_rgba(), jpeg_rgb(600, 800), png_claiming_size(2048, 2048)
    for body, content_type in ((small, "image/png"), (photo, "image/jpeg")):
        response = post(client, body, content_type)
        assert response.status_code == 200
        assert response.json() == pytest.approx(expected(body, content_type), abs=1e-6)
    post(client, declares_many_pixels)
    assert decoded_on == ["worker thread"] * 3


def test_runtime_path_answers_like_sagemaker_runtime(client, expected):
    body = png_rgba(seed=8)
    response = post(client, body, path=f"/endpoints/{SERVED}/invocations")
    assert response.status_code == 200
    assert response.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert response.json() == pytest.approx(expected(body), abs=1e-6)


# Every bad input: a named JSON error, never a 500


def test_empty_body_is_400(client):
    assert_named_error(post(client, b""), 400, "EmptyBodyError", "empty")


def test_non_image_is_400(client):
    assert_named_error(post(client, b"definitely not a picture"), 400, "InvalidImageError", "not a readable image")


def test_truncated_image_is_400(client):
    assert_named_error(post(client, truncated(png_rgba())), 400, "InvalidImageError", "truncated")


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "multipart/form-data", None])
def test_unsupported_content_type_is_415(client, content_type):
    assert_named_error(post(client, png_rgba(), content_type), 415, "UnsupportedContentTypeError", "image/png")


def test_unsupported_accept_is_406(client):
    response = post(client, png_rgba(), Accept="text/csv")
    assert_named_error(response, 406, "UnsupportedAcceptError", "application/json")


def test_oversized_body_with_content_length_is_413(client):
    response = post(client, b"\x89PNG" + bytes(MAX_BODY_BYTES))
    assert_named_error(response, 413, "BodyTooLargeError", f"limit is {MAX_BODY_BYTES} bytes")


def test_oversized_chunked_body_is_413_while_reading(client):
    sent = []

    def chunks():
        for _ in range(4 * MAX_BODY_BYTES // 10_000):
            sent.append(10_000)
            yield bytes(10_000)

    response = client.post("/invocations", content=chunks(), headers={"Content-Type": "image/png"})
    assert "content-length" not in response.request.headers  # really chunked
    assert_named_error(response, 413, "BodyTooLargeError", str(MAX_BODY_BYTES))


def test_body_at_the_limit_is_read(model_dir):
    body = png_rgba()
    with TestClient(serve.create_app(settings_for(model_dir, SCONES_MAX_BODY_BYTES=str(len(body))))) as client:
        assert post(client, body).status_code == 200
        assert post(client, body + b"\x00").status_code == 413


@pytest.mark.parametrize("size", [(40000, 40000), (5000, 5000)], ids=["pillow-bomb", "over-our-limit"])
def test_decompression_bomb_is_413(client, size):
    response = post(client, png_claiming_size(*size))
    assert_named_error(response, 413, "ImageTooLargeError", "pixels")


def test_pixel_limit_comes_from_the_environment(model_dir):
    with TestClient(serve.create_app(settings_for(model_dir, SCONES_MAX_IMAGE_PIXELS="1000"))) as client:
        assert_named_error(post(client, png_rgba()), 413, "ImageTooLargeError", "32x32 = 1024 pixels")


def test_wrong_method_is_405_not_500(client):
    assert client.get("/invocations").status_code == 405
    assert client.post("/ping").status_code == 405


def test_corrupted_images_never_cause_a_server_error(client):
    rng = random.Random(0)
    palette = Image.fromarray(random_pixels(40, 40, 3)).quantize(16)
    originals = [
        png_rgba(seed=1),
        jpeg_rgb(48, 48),
        encode(palette, "PNG"),
        encode(palette.convert("L"), "PNG"),
        encode(palette.convert("RGB"), "JPEG", progressive=True),
    ]
    statuses = set()
    for i in range(250):
        body = bytearray(originals[i % len(originals)])
        if i % 3 == 0:
            body = body[: rng.randrange(1, len(body))]
        else:  # mostly in the header, where decoders make their decisions
            span = 64 if i % 3 == 1 else len(body)
            for _ in range(rng.randrange(1, 6)):
                body[rng.randrange(min(span, len(body)))] = rng.randrange(256)
        response = post(client, bytes(body), "application/x-image")
        statuses.add(response.status_code)
        if response.status_code != 200:
            assert response.json()["error"] in ("InvalidImageError", "ImageTooLargeError"), response.text
    assert statuses <= {200, 400, 413} and 400 in statuses


def test_runtime_path_wraps_container_errors_as_model_error(client):
    response = post(client, png_rgba(), "text/plain", path=f"/endpoints/{SERVED}/invocations")
    assert response.status_code == 424
    assert response.headers["x-amzn-errortype"] == "ModelError"
    payload = response.json()
    assert payload["OriginalStatusCode"] == 415
    assert json.loads(payload["OriginalMessage"])["error"] == "UnsupportedContentTypeError"


@pytest.mark.parametrize("name", ["bad_name", "-leading-dash", "x" * 64, "dots.not.allowed"])
def test_runtime_path_refuses_invalid_endpoint_names(client, name):
    response = post(client, png_rgba(), path=f"/endpoints/{name}/invocations")
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"


@pytest.mark.parametrize("name", ["image-classification-2025-01-31-12-00-00-000", "MyEndpoint", SERVED])
def test_any_endpoint_path_answers_any_sagemaker_name_with_the_served_model(client, expected, caplog, name):
    """`scones solution run`'s functions call this path: a course solution's endpoint name is answered, logged."""
    body = png_rgba()
    with caplog.at_level(logging.INFO, logger="local_model.serve"):
        response = post(client, body, path=f"/any-endpoint/endpoints/{name}/invocations")
    assert response.status_code == 200
    assert response.json() == pytest.approx(expected(body), abs=1e-5)
    if name != SERVED:
        assert any(name in record.getMessage() and "accepted" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("name", ["bad_name", "-leading-dash", "x" * 64])
def test_any_endpoint_path_still_refuses_names_sagemaker_refuses(client, name):
    response = post(client, png_rgba(), path=f"/any-endpoint/endpoints/{name}/invocations")
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"


@pytest.mark.parametrize("name", ["scones-image-classifer", "bikes", f"{SERVED}-2"])
def test_runtime_path_refuses_endpoints_it_does_not_serve(client, name):
    """As SageMaker answers an endpoint that does not exist: a typo fails here, not only after promotion."""
    response = post(client, png_rgba(), path=f"/endpoints/{name}/invocations")
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    message = response.json()["message"]
    assert message.startswith(f"Endpoint {name} not found") and repr(SERVED) in message
    assert "SCONES_ENDPOINT_NAME" in message


def test_the_served_endpoint_is_the_one_deploy_names_by_default():
    assert deploy.DeployConfig().model_endpoint_name == SERVED == read_serve_settings({}).capture.endpoint_name


# Model loading


def test_no_model_means_unhealthy_ping_and_503_invocations(tmp_path):
    app = serve.create_app(settings_for(tmp_path / "missing"))  # creating the app loads nothing
    with TestClient(app) as client:
        assert_named_error(client.get("/ping"), 503, "ModelNotLoadedError", "ModelFormatError")
        assert_named_error(post(client, png_rgba()), 503, "ModelNotLoadedError", "model.json")


def test_settings_are_read_from_the_environment_when_the_app_is_created(model_dir, monkeypatch):
    monkeypatch.setenv("SCONES_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SCONES_MAX_BODY_BYTES", "10")
    with TestClient(serve.create_app()) as client:
        assert client.get("/ping").status_code == 200
        assert_named_error(post(client, png_rgba()), 413, "BodyTooLargeError", "limit is 10 bytes")


# Data capture from the server


def test_successful_requests_are_captured_and_flushed_on_shutdown(model_dir, tmp_path, expected):
    destination = tmp_path / "capture"
    settings = settings_for(
        model_dir,
        SCONES_CAPTURE_DESTINATION=str(destination),
        SCONES_CAPTURE_FLUSH_SECONDS="3600",
        SCONES_ENDPOINT_NAME="shop-endpoint",
    )
    bodies = [png_rgba(seed=s) for s in range(3)]
    with TestClient(serve.create_app(settings)) as client:
        for body in bodies[:2]:
            assert post(client, body).status_code == 200
        assert post(client, bodies[2], path="/endpoints/shop-endpoint/invocations").status_code == 200
        assert post(client, b"junk").status_code == 400  # failed requests are not captured
        assert post(client, bodies[0], path="/endpoints/other-endpoint/invocations").status_code == 400  # nor these
        assert list(read_captured_inferences(destination)) == []  # still buffered: flush is an hour away
    captured = list(read_captured_inferences(destination))
    assert [c.endpoint_name for c in captured] == ["shop-endpoint"] * 3
    by_body = {c.input_body: c for c in captured}
    assert set(by_body) == set(bodies)
    for body in bodies:
        assert by_body[body].output == pytest.approx(expected(body), abs=1e-6)
        assert by_body[body].input_content_type == "image/png"
        assert by_body[body].output_content_type == "application/json"


def test_capture_failure_never_fails_the_request(model_dir, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("capture cannot create a folder below a file")
    settings = settings_for(model_dir, SCONES_CAPTURE_DESTINATION=str(blocker / "capture"))
    with caplog.at_level(logging.ERROR, logger="local_model.capture"), TestClient(serve.create_app(settings)) as client:
        assert post(client, png_rgba()).status_code == 200
    assert any("could not write 1 capture records" in r.getMessage() for r in caplog.records)


def test_capture_to_s3_uses_the_sagemaker_layout(model_dir, monkeypatch):
    use_offline_aws(monkeypatch, "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="capture-bucket")
        settings = settings_for(
            model_dir, SCONES_CAPTURE_DESTINATION="s3://capture-bucket/datacapture", SCONES_ENDPOINT_NAME="bikes"
        )
        body = png_rgba(seed=5)
        with TestClient(serve.create_app(settings)) as client:
            assert post(client, body, path="/endpoints/bikes/invocations").status_code == 200
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="capture-bucket")["Contents"]]
        assert len(keys) == 1 and keys[0].startswith("datacapture/bikes/AllTraffic/") and keys[0].endswith(".jsonl")
        (captured,) = read_captured_inferences("s3://capture-bucket/datacapture", client=s3)
        assert captured.input_body == body and captured.endpoint_name == "bikes"


# Real HTTP through uvicorn


@pytest.fixture(scope="module")
def http_server(model_dir):
    with ModelServer(model_dir, env={"SCONES_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}) as server:
        yield server


def http_post(server, body, content_type="image/png", path="/invocations"):
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_http_main_paths(http_server, expected):
    body = png_rgba(seed=11)
    status, content_type, payload = http_post(http_server, body)
    assert (status, content_type) == (200, "application/json")
    assert json.loads(payload) == pytest.approx(expected(body), abs=1e-6)
    assert http_post(http_server, b"")[0] == 400
    assert http_post(http_server, b"text", "text/plain")[0] == 415
    assert json.loads(http_post(http_server, truncated(body))[2])["error"] == "InvalidImageError"


def test_http_oversized_body_gets_413_not_a_reset_connection(http_server):
    status, _, payload = http_post(http_server, bytes(3 * MAX_BODY_BYTES))
    assert status == 413 and json.loads(payload)["error"] == "BodyTooLargeError"


def test_http_oversized_chunked_body_gets_413(http_server):
    host, port = http_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (bytes(100_000) for _ in range(3 * MAX_BODY_BYTES // 100_000))
    connection.request("POST", "/invocations", body=chunks, headers={"Content-Type": "image/png"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"] == "BodyTooLargeError"
    connection.close()


def test_http_large_body_of_unsupported_type_gets_415(http_server):
    status, _, payload = http_post(http_server, bytes(2 * MAX_BODY_BYTES), "application/octet-stream")
    assert status == 415 and json.loads(payload)["error"] == "UnsupportedContentTypeError"


def test_http_keep_alive_connection_survives_errors(http_server, expected):
    host, port = http_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    statuses = []
    for body, content_type in [(b"x", "image/png"), (png_rgba(), "text/plain"), (png_rgba(), "image/png")]:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    assert statuses == [400, 415, 200]


def test_http_concurrent_requests_all_answered(http_server, expected):
    bodies = [png_rgba(seed=s) for s in range(16)]
    results: dict[int, tuple] = {}

    def worker(i):
        results[i] = http_post(http_server, bodies[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == len(bodies)
    for i, (status, _, payload) in results.items():
        assert status == 200 and json.loads(payload) == pytest.approx(expected(bodies[i]), abs=1e-6)


@pytest.fixture
def runtime_client(http_server, monkeypatch):
    """boto3's own sagemaker-runtime client, pointed at the server only through the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", http_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("sagemaker-runtime", config=Config(retries={"max_attempts": 1}))


def test_boto3_invoke_endpoint_works_unchanged(runtime_client, expected):
    body = png_rgba(seed=12)
    response = runtime_client.invoke_endpoint(
        EndpointName=SERVED, ContentType="image/png", Accept="application/json", Body=body
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(response["Body"].read()) == pytest.approx(expected(body), abs=1e-6)


def test_boto3_sees_bad_input_as_model_error(runtime_client):
    with pytest.raises(ClientError) as error:
        runtime_client.invoke_endpoint(EndpointName=SERVED, ContentType="text/csv", Body=b"1,2,3")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error.value.response["OriginalStatusCode"] == 415
    assert "UnsupportedContentTypeError" in error.value.response["OriginalMessage"]
    assert runtime_client.exceptions.ModelError is type(error.value)


def test_boto3_sees_an_endpoint_not_served_as_validation_error(runtime_client):
    with pytest.raises(ClientError) as error:
        runtime_client.invoke_endpoint(EndpointName="scones-typo", ContentType="image/png", Body=png_rgba())
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Endpoint scones-typo not found" in error.value.response["Error"]["Message"]


def test_http_capture_is_flushed_when_the_server_stops(model_dir, tmp_path, expected):
    destination = tmp_path / "capture"
    server = ModelServer(
        model_dir,
        capture_destination=str(destination),
        capture_sampling_percentage=100,
        endpoint_name="counter-endpoint",
        env={"SCONES_CAPTURE_FLUSH_SECONDS": "3600"},  # nothing is written before shutdown
    )
    bodies = [png_rgba(seed=s) for s in range(20, 25)]
    with server:
        for body in bodies:
            assert http_post(server, body)[0] == 200
    captured = list(read_captured_inferences(destination))
    assert [c.input_body for c in captured] == bodies
    assert {c.endpoint_name for c in captured} == {"counter-endpoint"}
    assert np.allclose([c.output for c in captured], [expected(b) for b in bodies], atol=1e-6)


def test_unexpected_failure_is_a_json_500_and_the_server_carries_on(model_dir, monkeypatch):
    with TestClient(serve.create_app(settings_for(model_dir))) as client:
        original = inference.predict_fn
        monkeypatch.setattr(inference, "predict_fn", lambda data, model: 1 / 0)
        response = post(client, png_rgba())
        assert_named_error(response, 500, "InternalServerError", "ZeroDivisionError")
        monkeypatch.setattr(inference, "predict_fn", original)
        assert post(client, png_rgba()).status_code == 200


# Settings


def test_settings_defaults_and_precedence():
    assert read_serve_settings({"SM_MODEL_DIR": "/sm"}).model_dir.as_posix() == "/sm"
    assert read_serve_settings({"SM_MODEL_DIR": "/sm", "SCONES_MODEL_DIR": "/ours"}).model_dir.as_posix() == "/ours"
    assert read_serve_settings({"SAGEMAKER_BIND_TO_PORT": "9000"}).port == 9000
    assert read_serve_settings({"SAGEMAKER_BIND_TO_PORT": "9000", "SCONES_PORT": "9001"}).port == 9001
    defaults = read_serve_settings({})
    assert defaults.max_body_bytes == 6 * 1024 * 1024 and defaults.torch_threads == 1
    assert not defaults.capture.enabled and defaults.capture.endpoint_name == SERVED
    assert read_serve_settings({"SCONES_CAPTURE_DESTINATION": "s3://b/p"}).capture.enabled
    off = {"SCONES_CAPTURE_DESTINATION": "s3://b/p", "SCONES_CAPTURE_SAMPLING_PERCENTAGE": "0"}
    assert not read_serve_settings(off).capture.enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCONES_MAX_BODY_BYTES", "six"),
        ("SCONES_MAX_BODY_BYTES", "0"),
        ("SCONES_PORT", "70000"),
        ("SCONES_CAPTURE_SAMPLING_PERCENTAGE", "150"),
        ("SCONES_TORCH_THREADS", "0"),
        ("SCONES_LOG_LEVEL", "loud"),
    ],
)
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        read_serve_settings({name: value})
