"""The `scones-model` image run as SageMaker runs it: `docker run <image> train` with /opt/ml mounted, and
`docker run <image> serve` on port 8080, checked from the host."""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
import uuid
from pathlib import Path

import docker_images
import httpx
import numpy as np
import pytest

from lambdas.contract import CLASSES
from local_model import inference
from local_model.capture_reader import read_captured_inferences
from local_model.classifier import pack_model_tar
from scones.local.supervisor import free_port

TINY = {"epochs": "3", "width": "8", "autoaugment": "true", "seed": "0"}
PING_TIMEOUT_S = 120
ENDPOINT_NAME = "scones-docker-test"


def docker_run(docker, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return docker.run(*args, check=False, timeout=timeout)


def opt_ml(root: Path, hyperparameters: dict) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "model").mkdir()
    return root


def train_in_container(docker, image: str, root: Path, train_dir: Path) -> subprocess.CompletedProcess:
    return docker_images.run_training(docker, root, train_dir, image, timeout=600)


@pytest.fixture(scope="module")
def trained(docker, model_image, small_train_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = opt_ml(tmp_path_factory.mktemp("opt_ml"), TINY)
    return root, train_in_container(docker, model_image, root, small_train_dir)


ROOT = Path(__file__).resolve().parents[2]


def test_the_image_runs_the_python_the_project_declares(docker, model_image):
    # pyproject.toml's requires-python (">=3.11,<3.12") and the Dockerfile's default base (python:3.11-slim)
    # say 3.11; the offline base is Debian 12, whose 3.11.2 predates tarfile's extraction filters (3.11.4).
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    declared = re.fullmatch(r">=(\d+)\.(\d+),<\d+\.\d+", requires).groups()
    dockerfile = (ROOT / "local_model" / "Dockerfile").read_text()
    assert re.search(rf"^ARG BASE_IMAGE=python:{declared[0]}\.{declared[1]}-slim$", dockerfile, re.MULTILINE)
    script = "import sys, tarfile; print(*sys.version_info[:3], hasattr(tarfile, 'data_filter'))"
    probe = docker_run(docker, "run", "--rm", "--entrypoint", "python3", model_image, "-c", script)
    assert probe.returncode == 0, probe.stderr
    major, minor, micro, filters = probe.stdout.split()
    assert (major, minor) == declared
    # Either way the model loads (test_train_writes_a_model_that_the_host_loads, the serve tests): say which.
    print(f"the image runs Python {major}.{minor}.{micro}, extraction filters: {filters}")


def test_train_writes_a_model_that_the_host_loads(trained, small_train_dir, tmp_path):
    root, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (root / "output" / "failure").exists()
    meta = json.loads((root / "model" / "model.json").read_text())
    assert meta["classes"] == list(CLASSES) and meta["hyperparameters"]["epochs"] == 3
    assert "epoch" in result.stderr  # the progress bar, as a training job's log shows it
    # SageMaker packs /opt/ml/model into model.tar.gz; the host's serving code loads that.
    model = inference.model_fn(pack_model_tar(root / "model", tmp_path / "model.tar.gz"))
    image = sorted((small_train_dir / "bicycle").glob("*.png"))[0].read_bytes()
    probabilities = inference.predict_fn(inference.input_fn(image, "image/png"), model)
    assert probabilities.shape == (1, 2) and np.isclose(probabilities.sum(), 1.0, atol=1e-5)


def test_a_bad_channel_writes_the_failure_file_and_exits_non_zero(docker, model_image, tmp_path):
    only_bicycles = tmp_path / "train"
    (only_bicycles / "bicycle").mkdir(parents=True)
    root = opt_ml(tmp_path / "opt_ml", TINY)
    result = train_in_container(docker, model_image, root, only_bicycles)
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("MissingClassError:"), failure
    assert not (root / "model" / "model.pt").exists()


@pytest.fixture(scope="module")
def served(docker, model_image, trained, tmp_path_factory):
    """`docker run <image> serve` with the trained model mounted read-only and captures to a host folder."""
    root, result = trained
    assert result.returncode == 0, "training failed; see test_train_writes_a_model_that_the_host_loads"
    captures = tmp_path_factory.mktemp("captures")
    port = free_port()
    name = f"scones-serve-{uuid.uuid4().hex[:8]}"
    started = docker_run(
        docker, "run", "--detach", "--name", name, "-p", f"127.0.0.1:{port}:8080",
        "-v", f"{root / 'model'}:/opt/ml/model:ro", "-v", f"{captures}:/captures",
        "-e", "SCONES_CAPTURE_DESTINATION=/captures", "-e", f"SCONES_ENDPOINT_NAME={ENDPOINT_NAME}",
        # Captures are written only at shutdown, so the test below proves that SIGTERM flushes them.
        "-e", "SCONES_CAPTURE_FLUSH_SECONDS=3600",
        model_image, "serve",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + PING_TIMEOUT_S
            while True:
                try:
                    if client.get("/ping").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                logs = docker_run(docker, "logs", name).stderr
                assert time.monotonic() < deadline, f"no 200 from /ping in {PING_TIMEOUT_S} s: {logs[-2000:]}"
                time.sleep(0.5)
            yield client, name, captures
    finally:
        docker_run(docker, "rm", "-f", name)


def test_ping_answers_once_the_model_is_loaded(served):
    client, _, _ = served
    assert client.get("/ping").status_code == 200


@pytest.mark.parametrize("label", CLASSES)
def test_invocations_scores_a_real_image(served, small_train_dir, label):
    client, _, _ = served
    image = sorted((small_train_dir / label).glob("*.png"))[0].read_bytes()
    response = client.post("/invocations", content=image, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    scores = response.json()
    assert len(scores) == 2 and abs(sum(scores) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [(b"not an image", "image/png", 400), (b"", "image/png", 400), (b"{}", "application/json", 415)],
)
def test_a_bad_input_gets_its_json_error(served, body, content_type, status):
    client, _, _ = served
    response = client.post("/invocations", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]


def test_sigterm_flushes_the_captures(docker, served, small_train_dir):
    client, name, captures = served
    answered = 2 + 1  # the two real images above, and this one
    image = sorted((small_train_dir / "bicycle").glob("*.png"))[1].read_bytes()
    assert client.post("/invocations", content=image, headers={"Content-Type": "image/png"}).status_code == 200
    assert list(Path(captures).rglob("*.jsonl")) == []  # nothing written before shutdown (flush interval 1 h)
    stopped = docker_run(docker, "stop", "--time", "30", name)  # SIGTERM, as SageMaker stops an endpoint
    assert stopped.returncode == 0, stopped.stderr
    exit_code = docker_run(docker, "inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert exit_code == "0"
    records = list(read_captured_inferences(captures, ENDPOINT_NAME))
    assert len(records) >= answered
    assert all(record.endpoint_name == ENDPOINT_NAME for record in records)
    assert sum(isinstance(record.output, list) and len(record.output) == 2 for record in records) == answered
