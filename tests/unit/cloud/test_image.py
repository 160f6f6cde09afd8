"""The serving image's way to ECR (cloud/image.py): the docker commands (a fake `docker` on PATH records its
argv), the platform check, and what ECR must hold for SageMaker (moto). No Docker daemon, no AWS account."""

from __future__ import annotations

import base64

import boto3
import pytest
from moto import mock_aws

from cloud.errors import (
    DockerCommandError,
    DockerUnavailableError,
    ImagePlatformError,
    ImageVerificationError,
    LocalImageMissingError,
)
from cloud.image import (
    LocalImage,
    check_platform,
    ensure_repository,
    inspect_local_image,
    instance_platform,
    push_image,
    verify_pushed_image,
)
from tests.helpers.moto_tls import moto_sees_tls  # noqa: F401 (an autouse fixture)
from tests.helpers.promotion_helpers import (
    IMAGE_ID,
    registry_receives,
)

pytestmark = pytest.mark.usefixtures("promotion_aws")


# --- Docker commands ---------------------------------------------------------------------------


def test_push_logs_in_on_stdin_tags_by_id_pushes_and_logs_out(docker, ecr_login):
    repository_uri, authorization = ecr_login
    image = inspect_local_image("scones-model:latest")
    assert image == LocalImage("scones-model:latest", IMAGE_ID, "linux/amd64")
    pushed = push_image(image, repository_uri, authorization)
    assert pushed == f"{repository_uri}:sha256-{IMAGE_ID.removeprefix('sha256:')}"
    registry = repository_uri.split("/", 1)[0]
    username, password = base64.b64decode(authorization["authorizationToken"]).decode().split(":")
    calls = docker.calls()
    assert [c["argv"] for c in calls[1:]] == [
        ["login", "--username", username, "--password-stdin", registry],
        ["tag", IMAGE_ID, pushed],
        ["push", pushed],
        ["logout", registry],
    ]
    assert calls[1]["stdin"] == password
    assert not any(password in arg for c in calls for arg in c["argv"])


def test_a_failed_push_still_logs_out(docker, ecr_login):
    repository_uri, authorization = ecr_login
    image = inspect_local_image()
    script = docker.bin_dir / "docker"
    script.write_text(script.read_text() + 'if args[0] == "push":\n    sys.exit("denied: not authorized")\n')
    with pytest.raises(DockerCommandError, match=r"`docker push .*` failed: denied: not authorized"):
        push_image(image, repository_uri, authorization)
    assert docker.argvs()[-1][0] == "logout"


def test_docker_problems_are_named_with_the_fix(docker, monkeypatch, no_docker):
    with pytest.raises(DockerUnavailableError, match="not on PATH: install Docker"):
        inspect_local_image()
    monkeypatch.setenv("PATH", str(docker.bin_dir))
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "daemon")
    with pytest.raises(DockerUnavailableError, match=r"no Docker daemon .*: start Docker"):
        inspect_local_image()
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "no-such-image")
    with pytest.raises(LocalImageMissingError, match="docker compose build model"):
        inspect_local_image("scones-model:latest")


@pytest.mark.parametrize(
    ("instance_type", "platform"),
    [
        ("ml.m5.large", "linux/amd64"),
        ("ml.g5.xlarge", "linux/amd64"),
        ("ml.inf2.xlarge", "linux/amd64"),
        ("ml.c5d.xlarge", "linux/amd64"),
        ("ml.c7g.large", "linux/arm64"),
        ("ml.m6gd.xlarge", "linux/arm64"),
        ("ml.c6gn.2xlarge", "linux/arm64"),
        ("ml.t4g.medium", "linux/arm64"),
    ],
)
def test_instance_platform(instance_type, platform):
    assert instance_platform(instance_type) == platform


def test_an_arm64_image_is_not_pushed_for_an_x86_endpoint():
    image = LocalImage("scones-model:latest", IMAGE_ID, "linux/arm64")  # built on an Apple silicon Mac
    with pytest.raises(ImagePlatformError, match="docker build --platform linux/amd64"):
        check_platform(image, "ml.m5.large")
    check_platform(image, "ml.c7g.large")


def test_an_oci_image_is_refused_because_sagemaker_cannot_pull_it(docker, model, tmp_path):
    tag = "sha256-" + IMAGE_ID.removeprefix("sha256:")
    with mock_aws():
        ecr = boto3.client("ecr")
        ensure_repository(ecr, "scones-model", "scones")
        registry_receives(ecr, "scones-model", tag, IMAGE_ID, media_type="application/vnd.oci.image.manifest.v1+json")
        with pytest.raises(ImageVerificationError, match="--provenance=false"):
            verify_pushed_image(ecr, "scones-model", tag, IMAGE_ID)
