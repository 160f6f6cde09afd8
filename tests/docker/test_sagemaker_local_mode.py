"""SageMaker local mode for real: the SageMaker Python SDK starts `scones-model` through Docker Compose,
`Estimator(...).fit(file://...)` trains in a container and `Model(...).deploy(instance_type="local")` serves
in one; a Predictor scores a real image. No AWS call is made: every botocore call and telemetry request of
this process is recorded, and AWS_ENDPOINT_URL points at a recorder on loopback in case any other one gets out."""

from __future__ import annotations

import http.server
import json
import threading

import botocore.client
import numpy as np
import pytest

from lambdas.contract import CLASSES
from local_model import inference
from local_model.capture_reader import read_captured_inferences
from scones.local.supervisor import free_port
from scones.pipeline import sagemaker_local

ROLE = "arn:aws:iam::000000000000:role/scones-local"  # a dummy: local mode never assumes it
HYPERPARAMETERS = {"epochs": 3, "width": 8, "autoaugment": True, "seed": 0}
ENDPOINT_NAME = "scones-local-mode-test"


@pytest.fixture
def aws_recorder(monkeypatch):
    """Every request that reaches the AWS endpoint the environment names (a server on loopback)."""
    requests: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            requests.append(f"{self.command} {self.path} {self.headers.get('X-Amz-Target', '')}")
            self.send_response(500)
            self.end_headers()

        do_GET = do_PUT = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield requests
    server.shutdown()


@pytest.fixture
def sdk_calls(monkeypatch):
    """Every AWS API call and telemetry request the SDK makes in this process (recorded, then let through)."""
    sagemaker_local._import_sdk()
    from sagemaker.telemetry import telemetry_logging

    calls: list[str] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def record(client, operation, params):
        calls.append(f"{client.meta.service_model.service_name}:{operation}")
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    monkeypatch.setattr(telemetry_logging, "_requests_helper", lambda url, timeout: calls.append(url))
    return calls


@pytest.fixture
def local_mode_env(monkeypatch, tmp_path, model_image):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv(sagemaker_local.IMAGE_URI_VAR, model_image)
    monkeypatch.setenv(sagemaker_local.SERVING_PORT_VAR, str(free_port()))
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def running_local_containers(docker) -> list[str]:
    # The SDK names its containers <random>-algo-1-<random>; it leaves them behind exited, not running.
    running = docker.run("ps", "--filter", "name=algo-1", "--filter", "status=running", "--format", "{{.Names}}")
    return running.stdout.split()


def test_fit_deploy_predict_delete_without_aws(
    docker, local_mode_env, small_train_dir, tmp_path, aws_recorder, sdk_calls
):
    # SDK 2.x takes the Compose v2 plugin the Docker test support installs (2.40.3), not a docker-compose v1.
    assert sagemaker_local.check_docker() == ["docker", "compose"]

    model_tar = sagemaker_local.train(small_train_dir, tmp_path / "output", role=ROLE, hyperparameters=HYPERPARAMETERS)
    assert model_tar.name == "model.tar.gz" and model_tar.is_file()
    model = inference.model_fn(model_tar)  # the host loads what the training container wrote
    assert model.meta.hyperparameters["epochs"] == 3 and model.meta.width == 8  # our hyperparameters reached it

    endpoint = sagemaker_local.deploy(model_tar, role=ROLE, endpoint_name=ENDPOINT_NAME, workdir=tmp_path / "endpoints")
    answers = {}
    try:
        for label in CLASSES:
            image = sorted((small_train_dir / label).glob("*.png"))[0].read_bytes()
            body = endpoint.predictor.predict(image, initial_args={"ContentType": "image/png"})
            answers[label] = json.loads(body)
            expected = inference.predict_fn(inference.input_fn(image, "image/png"), model)[0]
            assert len(answers[label]) == 2 and np.allclose(answers[label], expected, atol=1e-4)
    finally:
        endpoint.delete()

    assert running_local_containers(docker) == [], "the endpoint's container still runs after delete()"
    captured = list(read_captured_inferences(endpoint.capture_dir, ENDPOINT_NAME))
    assert sorted(map(tuple, (c.output for c in captured))) == sorted(map(tuple, answers.values()))
    assert sdk_calls == [] and aws_recorder == [], (sdk_calls, aws_recorder)


def test_a_failing_training_job_names_its_reason(docker, local_mode_env, tmp_path, sdk_calls):
    only_bicycles = tmp_path / "train"
    (only_bicycles / "bicycle").mkdir(parents=True)
    with pytest.raises(sagemaker_local.TrainingJobError, match="MissingClassError"):
        sagemaker_local.train(only_bicycles, tmp_path / "output", role=ROLE, hyperparameters=HYPERPARAMETERS)
    assert sdk_calls == []
