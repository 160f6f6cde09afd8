"""Fixtures shared by the unit tests (no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3
import botocore.endpoint
import pytest
import torch
from moto import mock_aws

from cloud import promote
from cloud.image import ensure_repository, push_image
from local_model.artifact import pack_model_tar
from tests.helpers.image_samples import make_model_dir
from tests.helpers.promotion_helpers import FAKE_DOCKER, IMAGE_ID, FakeDocker, registry_receives


def use_offline_aws(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """Dummy credentials and a region, and no emulator endpoint or profile: boto3 stays in-process."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)


@pytest.fixture
def one_torch_thread():
    """Single-image inference is fastest, and deterministic, on one thread (as the server runs it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small untrained model directory in the format training writes."""
    return make_model_dir(tmp_path_factory.mktemp("model"))


# --- The promotion tests' fixtures (test_plan.py, test_image.py, test_promote.py) ---------------------------


@pytest.fixture
def promotion_aws(monkeypatch):
    """The region the promotion tests expect moto in, dummy credentials, and no instance metadata lookups."""
    use_offline_aws(monkeypatch, "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def docker(tmp_path, monkeypatch) -> FakeDocker:
    """A fake `docker` first on PATH (the only one: the machine's real CLI would look for a daemon)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker-calls.jsonl"))
    monkeypatch.setenv("FAKE_DOCKER_IMAGE_ID", IMAGE_ID)
    return FakeDocker(bin_dir, tmp_path / "docker-calls.jsonl")


@pytest.fixture
def no_docker(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def model(tmp_path) -> Path:
    """A trained model where `scones train` leaves it in the workdir tmp_path (a small untrained one will do)."""
    path = tmp_path / "model" / "model.tar.gz"
    pack_model_tar(make_model_dir(tmp_path / "trained"), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any HTTP request botocore would send fails the test."""

    def refuse(self, request):
        raise AssertionError(f"the dry run sent {request.method} {request.url}")

    monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", refuse)


@pytest.fixture
def registry(monkeypatch):
    """Make the fake `docker push` land in moto's ECR: the real push_image runs (fake docker), then the
    image appears in the repository as a push would leave it."""
    push = push_image

    def push_and_store(image, repository_uri, authorization):
        pushed = push(image, repository_uri, authorization)
        repository = repository_uri.split("/", 1)[1]
        registry_receives(boto3.client("ecr"), repository, image.tag, image.image_id)
        return pushed

    monkeypatch.setattr(promote, "push_image", push_and_store)


@pytest.fixture
def ecr_login():
    """(repository URI, authorization data) as ECR answers them."""
    with mock_aws():
        ecr = boto3.client("ecr")
        repository = ensure_repository(ecr, "scones-model", "scones", progress=lambda _: None)
        yield repository["repositoryUri"], ecr.get_authorization_token()["authorizationData"][0]
