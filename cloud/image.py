"""The serving image on its way to SageMaker: the local image read through the docker CLI (thin: every
command is one argv the tests can read), its platform checked against the instance type, pushed to an ECR
repository tagged by its ID, verified there as a manifest SageMaker accepts, and removed again."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_LOCAL_IMAGE
from cloud.errors import (
    DockerCommandError,
    DockerUnavailableError,
    ImagePlatformError,
    ImageVerificationError,
    LocalImageMissingError,
    PromotionError,
)

logger = logging.getLogger(__name__)

# The image's tag is its ID, so a tag in ECR names exactly one local image.
IMAGE_TAG_PREFIX = "sha256-"
IMAGE_TAG_PATTERN = re.compile(r"^sha256-[0-9a-f]{64}$")
IMAGE_ID_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
# ECR's rule for repository names.
REPOSITORY_PATTERN = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# Marks a repository promote created, and for which stack: teardown deletes only those.
STACK_TAG_KEY = "scones-stack"
# SageMaker's CreateModel accepts Docker image manifests (schema 2) only: an OCI manifest or an image
# index (what BuildKit writes with provenance attestations) fails there, after ECR took it happily.
SAGEMAKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (
    SAGEMAKER_MANIFEST_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
# SageMaker's Graviton instance families (ml.c6g, ml.c7gn, ml.m6gd, ml.t4g, ...) run linux/arm64.
_ARM64_INSTANCE = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")
_DAEMON_DOWN = ("Cannot connect to the Docker daemon", "error during connect", "Is the docker daemon running")


def default_repository(stack_name: str) -> str:
    """`<stack>-model`, lower case as ECR wants it ("scones-model" for the default stack)."""
    return re.sub(r"-+", "-", stack_name.lower()).strip("-") + "-model"


def instance_platform(instance_type: str) -> str:
    return "linux/arm64" if _ARM64_INSTANCE.match(instance_type) else "linux/amd64"


def registry_host(target: AwsTarget) -> str:
    """The ECR registry's host name, in the region's partition (amazonaws.com, amazonaws.com.cn, ...)."""
    return f"{target.account_id}.dkr.ecr.{target.region}.{target.dns_suffix}"


# --- Docker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalImage:
    reference: str  # what was asked for, e.g. scones-model:latest
    image_id: str  # sha256:<64 hex>, the content address of the image
    platform: str  # e.g. linux/amd64

    @property
    def tag(self) -> str:
        return IMAGE_TAG_PREFIX + self.image_id.removeprefix("sha256:")


def run_docker(args: list[str], *, stdin: str | None = None) -> str:
    """Run `docker ARGS...` and return its standard output. Secrets go through `stdin`, never `args`."""
    executable = shutil.which("docker")
    if executable is None:
        raise DockerUnavailableError(
            "the docker CLI is not on PATH: install Docker (https://docs.docker.com/get-docker/)"
        )
    completed = subprocess.run([executable, *args], input=stdin, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        lines = completed.stderr.strip() or completed.stdout.strip() or f"exit status {completed.returncode}"
        detail = lines.splitlines()[-1]
        if any(marker in lines for marker in _DAEMON_DOWN):
            raise DockerUnavailableError(f"no Docker daemon ({detail}): start Docker and run again")
        raise DockerCommandError(f"`docker {' '.join(args[:2])}` failed: {detail}")
    return completed.stdout


def inspect_local_image(reference: str = DEFAULT_LOCAL_IMAGE) -> LocalImage:
    """The local image's ID and platform, from `docker image inspect`."""
    try:
        out = run_docker(["image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", reference])
    except DockerCommandError as e:
        if "no such image" in str(e).lower():
            raise LocalImageMissingError(
                f"no image {reference} in the local Docker image store: build it with `docker compose build model`"
            ) from e
        raise
    image_id, _, platform = out.strip().partition(" ")
    if not IMAGE_ID_PATTERN.match(image_id):
        raise DockerCommandError(f"`docker image inspect {reference}` gave {out.strip()!r}, not an image ID")
    return LocalImage(reference, image_id, platform)


def check_platform(image: LocalImage, instance_type: str) -> None:
    expected = instance_platform(instance_type)
    if image.platform != expected:
        raise ImagePlatformError(
            f"{image.reference} is built for {image.platform} but {instance_type} runs {expected}: rebuild it with "
            f"`docker build --platform {expected} --provenance=false -f local_model/Dockerfile -t {image.reference} .`"
        )


def push_image(image: LocalImage, repository_uri: str, authorization: dict) -> str:
    """Log in to the registry (password on stdin), tag the image by its ID, push it, log out again.
    Returns what was pushed, `<repository_uri>:sha256-<id>`."""
    registry = urlparse(authorization["proxyEndpoint"]).netloc or authorization["proxyEndpoint"]
    username, _, password = base64.b64decode(authorization["authorizationToken"]).decode().partition(":")
    target = f"{repository_uri}:{image.tag}"
    run_docker(["login", "--username", username, "--password-stdin", registry], stdin=password)
    try:
        # By ID, not by name: the name may point at another image by now.
        run_docker(["tag", image.image_id, target])
        run_docker(["push", target])
    finally:
        # The token is valid for 12 hours; do not leave it in the user's Docker config.
        try:
            run_docker(["logout", registry])
        except PromotionError as e:
            logger.warning("could not log out of %s: %s", registry, e)
    return target


# --- ECR ---------------------------------------------------------------------------------------


def _error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def describe_repository(ecr, name: str) -> dict | None:
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as e:
        if _error_code(e) == "RepositoryNotFoundException":
            return None
        raise


def ensure_repository(ecr, name: str, stack_name: str, progress: Callable[[str], None] = logger.info) -> dict:
    """The repository, created if missing with immutable tags, scanning on push and a tag naming the stack."""
    repository = describe_repository(ecr, name)
    if repository is not None:
        if repository.get("imageTagMutability") != "IMMUTABLE":
            progress(f"warning: ECR repository {name} exists with mutable tags; promote would create it immutable")
        return repository
    repository = ecr.create_repository(
        repositoryName=name,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
        tags=[{"Key": "project", "Value": "scones-unlimited"}, {"Key": STACK_TAG_KEY, "Value": stack_name}],
    )["repository"]
    progress(f"created ECR repository {repository['repositoryUri']} (immutable tags, scan on push)")
    return repository


def image_in_repository(ecr, repository: str, tag: str) -> bool:
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        return True
    except ClientError as e:
        if _error_code(e) in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return False
        raise


def verify_pushed_image(ecr, repository: str, tag: str, image_id: str) -> str:
    """Check that ECR holds the local image under `tag`, in a manifest SageMaker can pull; return its digest.

    The image ID is the digest of the image's config with the classic Docker image store, and of its
    manifest with the containerd image store: either must match what ECR holds."""
    response = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=list(MANIFEST_TYPES)
    )
    if not response.get("images"):
        reasons = "; ".join(f.get("failureReason", "") for f in response.get("failures", []))
        raise ImageVerificationError(f"{repository}:{tag} is not in ECR after the push ({reasons or 'no reason'})")
    image = response["images"][0]
    digest = image["imageId"]["imageDigest"]
    body = json.loads(image["imageManifest"])
    media_type = image.get("imageManifestMediaType") or body.get("mediaType")
    if image_id not in (digest, body.get("config", {}).get("digest")):
        raise ImageVerificationError(
            f"{repository}:{tag} in ECR (manifest {digest}) is not the local image {image_id}: delete the tag in ECR "
            "and promote again"
        )
    if media_type != SAGEMAKER_MANIFEST_TYPE:
        raise ImageVerificationError(
            f"{repository}:{tag} is stored as {media_type}, which SageMaker refuses (it takes "
            f"{SAGEMAKER_MANIFEST_TYPE} only): rebuild with `docker buildx build --provenance=false "
            "--output type=docker ...` (or the classic image store), delete the tag in ECR, and promote again"
        )
    return digest


def remove_repository_images(
    ecr, repository: str, stack_name: str, keep_repository: bool, progress: Callable[[str], None] = logger.info
) -> None:
    """Delete the repository if promote created it for this stack, else only the images it pushed."""
    described = describe_repository(ecr, repository)
    if described is None:
        progress(f"no ECR repository {repository}")
        return
    tags = ecr.list_tags_for_resource(resourceArn=described["repositoryArn"]).get("tags", [])
    ours = {t["Key"]: t["Value"] for t in tags}.get(STACK_TAG_KEY) == stack_name
    if ours and not keep_repository:
        ecr.delete_repository(repositoryName=repository, force=True)
        progress(f"deleted ECR repository {repository} and its images")
        return
    pushed = [
        image_id
        for page in ecr.get_paginator("list_images").paginate(repositoryName=repository, filter={"tagStatus": "TAGGED"})
        for image_id in page["imageIds"]
        if IMAGE_TAG_PATTERN.match(image_id.get("imageTag", ""))
    ]
    for start in range(0, len(pushed), 100):  # BatchDeleteImage takes at most 100 image IDs
        ecr.batch_delete_image(
            repositoryName=repository, imageIds=[{"imageTag": i["imageTag"]} for i in pushed[start : start + 100]]
        )
    why = "as asked" if ours else f"promote did not create it for stack {stack_name}"
    progress(f"deleted {len(pushed)} pushed images from ECR repository {repository}; kept the repository ({why})")
