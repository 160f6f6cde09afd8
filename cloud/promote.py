"""Promote what was tested on the emulator to AWS: push the same model image to ECR, upload the same
model.tar.gz and deploy the same template with the SageMaker endpoint on; a dry run that shows what
would be created and proves the artifacts are the tested ones; a teardown that leaves nothing billed.
Run `python -m cloud.promote --help`.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.loaders
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, WaiterError

from cloud import manifest
from cloud.defaults import DEFAULT_INSTANCE_TYPE, DEFAULT_LOCAL_IMAGE, DEFAULT_WORKDIR
from cloud.deploy import (
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_STACK_NAME,
    TEMPLATE_PATH,
    Artifact,
    DeployConfig,
    DeployError,
    RealAwsRefusedError,
    artifact_bucket_name,
    artifact_digests,
    build_artifacts,
    deploy_stack,
    is_real_aws_url,
    make_client,
    refuse_real_aws,
    stack_resource_id,
    stack_status,
    target_clients,
    teardown_stack,
)
from cloud.template import TemplateError, load_template
from lambdas.contract import DEFAULT_CONFIDENCE_THRESHOLD

logger = logging.getLogger(__name__)

# The scones command line's default workdir: `scones train` writes the model there and `scones deploy`
# records the manifest there (tests/unit/test_promote.py checks these against scones.steps).
DEFAULT_MODEL_PATH = DEFAULT_WORKDIR / "model" / "model.tar.gz"
DEFAULT_MANIFEST_PATH = DEFAULT_WORKDIR / manifest.MANIFEST_NAME
CREATE_MODEL_ENDPOINT_PARAMETER = "CreateModelEndpoint"  # "true" turns the SageMaker resources on

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


class PromotionError(DeployError):
    """Promotion, its dry run or its teardown cannot go on; the message says why and what to do."""


class PromotionEnvironmentError(PromotionError):
    """Something promotion needs is missing: credentials, Docker, the image, the model, the local test's record."""


class AwsCredentialsMissingError(PromotionEnvironmentError):
    """No (working) AWS credentials for an AWS target."""


class DockerUnavailableError(PromotionEnvironmentError):
    """No docker CLI, or no daemon behind it."""


class LocalImageMissingError(PromotionEnvironmentError):
    """The model image to push is not in the local Docker image store."""


class ModelDataMissingError(PromotionEnvironmentError):
    """There is no model.tar.gz where promotion looks for it."""


class LocalTestRecordError(PromotionEnvironmentError):
    """No usable record of a local test to compare the artifacts with."""


class UntestedArtifactsError(PromotionError):
    """The artifacts differ from the ones tested locally."""


class DockerCommandError(PromotionError):
    """A docker command failed."""


class ImagePlatformError(PromotionError):
    """The image's platform is not the endpoint instance's."""


class ImageVerificationError(PromotionError):
    """What ECR holds under the tag is not the local image, or not an image SageMaker can run."""


class TeardownIncompleteError(PromotionError):
    """Something billable is still there after the teardown."""


# --- Configuration -----------------------------------------------------------------------------


def default_repository(stack_name: str) -> str:
    """`<stack>-model`, lower case as ECR wants it ("scones-model" for the default stack)."""
    return re.sub(r"-+", "-", stack_name.lower()).strip("-") + "-model"


@dataclass(frozen=True)
class PromotionConfig:
    stack_name: str = DEFAULT_STACK_NAME
    model_data_path: Path = DEFAULT_MODEL_PATH
    local_image: str = DEFAULT_LOCAL_IMAGE
    repository: str = ""  # the ECR repository; empty: default_repository(stack_name)
    endpoint_name: str = DEFAULT_ENDPOINT_NAME
    instance_type: str = DEFAULT_INSTANCE_TYPE
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    data_capture_sampling_percentage: int = 100
    manifest_path: Path = DEFAULT_MANIFEST_PATH

    @property
    def repository_name(self) -> str:
        return self.repository or default_repository(self.stack_name)

    def deploy_config(self, image_tag: str) -> DeployConfig:
        return DeployConfig(
            stack_name=self.stack_name,
            model_endpoint_name=self.endpoint_name,
            confidence_threshold=self.confidence_threshold,
            create_model_endpoint=True,
            model_image_repository=self.repository_name,
            model_image_tag=image_tag,
            model_data_path=Path(self.model_data_path),
            endpoint_instance_type=self.instance_type,
            data_capture_sampling_percentage=self.data_capture_sampling_percentage,
        )

    def check(self) -> None:
        self.deploy_config(IMAGE_TAG_PREFIX + "0" * 64).check()
        if not 2 <= len(self.repository_name) <= 256 or not REPOSITORY_PATTERN.match(self.repository_name):
            raise PromotionError(
                f"ECR repository name {self.repository_name!r} must be lower-case letters, digits and . _ - / "
                "separators (2 to 256 characters)"
            )
        if not self.instance_type.startswith("ml."):
            raise PromotionError(f"instance type {self.instance_type!r} is not a SageMaker one (ml.m5.large, ...)")


def instance_platform(instance_type: str) -> str:
    return "linux/arm64" if _ARM64_INSTANCE.match(instance_type) else "linux/amd64"


# --- AWS session -------------------------------------------------------------------------------


def promotion_session(region: str | None = None) -> boto3.Session:
    """A session on the target (the environment decides, as everywhere: AWS unless AWS_ENDPOINT_URL says
    otherwise) in `region` or the configured one. Makes no call."""
    session = boto3.Session(region_name=region) if region else boto3.Session()
    if not session.region_name:
        raise PromotionEnvironmentError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    return session


def require_credentials(session: boto3.Session) -> None:
    if session.get_credentials() is None:
        raise AwsCredentialsMissingError(
            "no AWS credentials: run `aws configure` (or `aws sso login`), or set AWS_PROFILE, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run again"
        )


def caller_account(sts) -> str:
    try:
        return sts.get_caller_identity()["Account"]
    except NoCredentialsError as e:
        raise AwsCredentialsMissingError(f"no AWS credentials ({e}): run `aws configure` or set AWS_PROFILE") from e
    except ClientError as e:
        code = e.response["Error"]["Code"]
        raise AwsCredentialsMissingError(
            f"the AWS credentials do not work ({code}): refresh them (`aws sso login`, `aws configure`) and run again"
        ) from e


def registry_host(account_id: str, region: str, session: boto3.Session) -> str:
    """The ECR registry's host name, in the region's partition (amazonaws.com, amazonaws.com.cn, ...)."""
    partition = session.get_partition_for_region(region)
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    suffix = next(p["outputs"]["dnsSuffix"] for p in partitions if p["id"] == partition)
    return f"{account_id}.dkr.ecr.{region}.{suffix}"


# --- Docker (the CLI, thin: every command is one argv the tests can read) ----------------------


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


# --- What a promotion ships, and the proof it was tested ---------------------------------------


@dataclass(frozen=True)
class TemplateResource:
    logical_id: str
    type: str
    condition: str | None


def _template(text: str) -> dict:
    try:
        return load_template(text)
    except TemplateError as e:
        raise PromotionError(f"cloud/template.yaml: {e}") from e


def endpoint_condition(text: str) -> str:
    """The name of the template's condition that tests the CreateModelEndpoint parameter."""
    conditions = _template(text).get("Conditions") or {}
    wanted = {"Fn::Equals": [{"Ref": CREATE_MODEL_ENDPOINT_PARAMETER}, "true"]}
    for name, condition in conditions.items():
        if condition == wanted:
            return name
    raise PromotionError(f'template.yaml has no condition on {CREATE_MODEL_ENDPOINT_PARAMETER} being "true"')


def template_resources(text: str) -> list[TemplateResource]:
    """The template's resources, in order, with their type and condition."""
    resources = []
    for logical_id, body in _template(text)["Resources"].items():
        if not isinstance(body, dict) or "Type" not in body:
            raise PromotionError(f"template resource {logical_id} has no Type")
        resources.append(TemplateResource(logical_id, body["Type"], body.get("Condition")))
    return resources


def load_tested_manifest(path: Path) -> manifest.Manifest:
    try:
        record = manifest.read_manifest(path)
    except manifest.ManifestError as e:
        raise LocalTestRecordError(str(e)) from e
    if is_real_aws_url(record.target):
        raise LocalTestRecordError(
            f"{path} records a deployment to AWS ({record.describe()}), not a local test: deploy to the emulator "
            "again to record one"
        )
    return record


def current_digests(
    config: PromotionConfig, image: LocalImage | None
) -> tuple[dict[str, Artifact], dict[str, str | None], dict[str, str]]:
    """(artifacts to upload, sha256 by name with None where unknown, why unknown)."""
    notes = {}
    model_path = Path(config.model_data_path)
    try:
        artifacts = build_artifacts(model_path)
    except OSError:
        artifacts = build_artifacts()
        notes[manifest.MODEL_DATA] = f"no file at {model_path}: run `scones train`, or pass --model"
    digests: dict[str, str | None] = dict(artifact_digests(artifacts, image.image_id if image else None))
    digests.setdefault(manifest.MODEL_DATA, None)
    digests.setdefault(manifest.MODEL_IMAGE_ID, None)
    return artifacts, digests, notes


def compare_with_test(digests: dict[str, str | None], manifest_path: Path) -> manifest.Comparison:
    return manifest.compare_artifacts(digests, load_tested_manifest(manifest_path))


@dataclass(frozen=True)
class PromotionPlan:
    """What a promotion would do, for the dry run; built with no AWS call unless asked to look up."""

    config: PromotionConfig
    region: str
    resources: list[TemplateResource]
    endpoint_condition: str  # the template's condition that is true on AWS
    artifacts: dict[str, Artifact]
    digests: dict[str, str | None]
    notes: dict[str, str]  # why a digest or the comparison is missing
    image: LocalImage | None
    comparison: manifest.Comparison | None
    account_id: str | None = None
    registry: str | None = None
    found: dict[str, str] = field(default_factory=dict)  # what --lookup found on the target

    @property
    def proven(self) -> bool:
        """Whether every artifact is shown to be the one tested locally."""
        return self.comparison is not None and self.comparison.identical

    @property
    def artifact_bucket(self) -> str | None:
        if self.account_id is None:
            return None
        return artifact_bucket_name(self.config.stack_name, self.account_id, self.region)


def plan_promotion(
    config: PromotionConfig, *, session: boto3.Session | None = None, lookup: bool = False
) -> PromotionPlan:
    """What `promote` would create and ship, and whether it is what was tested locally. Makes no AWS
    call, and needs no credentials, unless `lookup` (then only read-only calls: STS, CloudFormation and
    ECR describes)."""
    config.check()
    session = session or promotion_session()
    notes: dict[str, str] = {}
    try:
        image = inspect_local_image(config.local_image)
    except PromotionError as e:
        image = None
        notes[manifest.MODEL_IMAGE_ID] = str(e)
    artifacts, digests, more_notes = current_digests(config, image)
    notes.update(more_notes)
    try:
        comparison = compare_with_test(digests, config.manifest_path)
    except LocalTestRecordError as e:
        comparison = None
        notes["comparison"] = str(e)
    template = TEMPLATE_PATH.read_text()
    plan = PromotionPlan(
        config=config,
        region=session.region_name,
        resources=template_resources(template),
        endpoint_condition=endpoint_condition(template),
        artifacts=artifacts,
        digests=digests,
        notes=notes,
        image=image,
        comparison=comparison,
    )
    if not lookup:
        return plan
    return look_up_target(plan, session)


def look_up_target(plan: PromotionPlan, session: boto3.Session) -> PromotionPlan:
    """The plan completed with read-only calls: account, whether the stack, repository and image exist."""
    found: dict[str, str] = {}
    try:
        require_credentials(session)
        account_id = caller_account(make_client(session, "sts"))
    except (AwsCredentialsMissingError, BotoCoreError) as e:
        found["lookup"] = f"skipped: {e}"
        return replace(plan, found=found)
    cfn, ecr = make_client(session, "cloudformation"), make_client(session, "ecr")
    try:
        status = stack_status(cfn, plan.config.stack_name)
        found["stack"] = f"exists ({status}): would be updated" if status else "does not exist: would be created"
        repository = describe_repository(ecr, plan.config.repository_name)
        found["repository"] = "exists" if repository else "does not exist: would be created"
        if repository and plan.image:
            exists = image_in_repository(ecr, plan.config.repository_name, plan.image.tag)
            found["image"] = "already pushed: would not be pushed again" if exists else "not pushed yet"
    except (ClientError, BotoCoreError) as e:
        found["lookup"] = f"incomplete: {e}"
    return replace(plan, account_id=account_id, registry=registry_host(account_id, plan.region, session), found=found)


def format_plan(plan: PromotionPlan) -> str:
    config, found = plan.config, plan.found
    account = plan.account_id or "not looked up (--lookup, with credentials)"
    registry = plan.registry or f"<account>.dkr.ecr.{plan.region}.<partition domain>"
    bucket = plan.artifact_bucket or f"{config.stack_name.lower()[:30]}-artifacts-<hash of account, region, stack>"
    tag = plan.image.tag if plan.image else "sha256-<the image ID>"

    def with_found(text: str, key: str, otherwise: str = "") -> str:
        return f"{text} ({found[key]})" if key in found else text + otherwise

    lines = [
        "Dry run: nothing is created; " + ("read-only AWS calls only." if found else "no AWS call is made."),
        "",
        "Target",
        f"  account          {account}",
        f"  region           {plan.region}",
        with_found(f"  stack            {config.stack_name}", "stack"),
    ]
    if "lookup" in found:
        lines.append(f"  lookup           {found['lookup']}")
    lines += ["", f"Resources (template.yaml, {CREATE_MODEL_ENDPOINT_PARAMETER}=true)"]
    for resource in plan.resources:
        when = {None: "", plan.endpoint_condition: f"  (AWS only: {plan.endpoint_condition})"}.get(
            resource.condition, f"  (if {resource.condition})"
        )
        lines.append(f"  {resource.logical_id:<28} {resource.type}{when}")
    platform = instance_platform(config.instance_type)
    lines += [
        "",
        "SageMaker endpoint",
        f"  name             {config.endpoint_name}",
        f"  instances        1 x {config.instance_type} ({platform}), billed by the hour until teardown",
        f"  data capture     {config.data_capture_sampling_percentage}% of requests, input and output, "
        "to s3://<ImageBucket>/data-capture/",
        "",
        "ECR",
        with_found(
            f"  repository       {registry}/{config.repository_name}",
            "repository",
            " (created if missing: immutable tags, scan on push)",
        ),
        with_found(f"  image            {config.local_image} -> tag {tag}", "image"),
        "",
        f"S3 (artifact bucket {bucket})",
        *(f"  {artifact.key}" for artifact in plan.artifacts.values()),
        "",
        "Artifacts (sha256; for the model image, its ID)",
    ]
    checks = {check.name: check for check in plan.comparison.checks} if plan.comparison else {}
    for name, digest in plan.digests.items():
        verdict = f"  [{checks[name].verdict}]" if name in checks and (digest or checks[name].recorded) else ""
        lines.append(f"  {name:<30} {digest or 'cannot be determined here'}{verdict}")
        if name in plan.notes:
            lines.append(f"  {'':<30} ({plan.notes[name]})")
    lines.append("")
    if plan.comparison is None:
        lines.append(f"NOT proven to be the tested artifacts: {plan.notes['comparison']}")
    else:
        lines.append(plan.comparison.summary())
    return "\n".join(lines)


# --- Promote and tear down ---------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionResult:
    outputs: dict[str, str]  # the stack's outputs
    image_uri: str  # <registry>/<repository>:sha256-<image id>
    image_digest: str  # the manifest digest ECR holds
    endpoint_name: str
    state_machine_arn: str | None  # None only where the target keeps no stack outputs (moto)

    def summary(self) -> dict:
        return {
            "state_machine_arn": self.state_machine_arn,
            "endpoint_name": self.endpoint_name,
            "image_uri": self.image_uri,
            "image_digest": self.image_digest,
            "outputs": self.outputs,
        }


def _aws_clients(session: boto3.Session, allow_aws: bool, *services: str) -> tuple:
    """CloudFormation, S3, STS and `services`, after refusing real AWS unless allowed and checking
    for credentials; no call is made."""
    others = tuple(make_client(session, service) for service in services)
    refuse_real_aws(
        list(others),
        allow_aws,
        advice=" without --yes-really-aws (allow_aws=True): a promotion creates a SageMaker endpoint, "
        "billed by the hour",
    )
    cfn, s3, sts = target_clients(session, allow_aws)
    require_credentials(session)
    return (cfn, s3, sts, *others)


def promote(
    config: PromotionConfig,
    *,
    session: boto3.Session | None = None,
    allow_aws: bool = False,
    allow_untested: bool = False,
    timeout_s: float = 3600.0,
    progress: Callable[[str], None] = logger.info,
) -> PromotionResult:
    """Push the model image to ECR (tagged with its ID), upload model.tar.gz and deploy the stack with
    the SageMaker endpoint; refuse unless the artifacts are the ones tested locally (`allow_untested`
    overrides). Everything local is checked before the first call that creates anything."""
    config.check()
    session = session or promotion_session()
    _, _, sts, ecr = _aws_clients(session, allow_aws, "ecr")
    if not Path(config.model_data_path).is_file():
        raise ModelDataMissingError(f"no model.tar.gz at {config.model_data_path}: run `scones train`, or pass --model")
    image = inspect_local_image(config.local_image)
    check_platform(image, config.instance_type)
    _, digests, _ = current_digests(config, image)
    try:
        comparison = compare_with_test(digests, config.manifest_path)
        if not comparison.identical:
            raise UntestedArtifactsError(comparison.summary() + "\n(--allow-untested promotes them anyway)")
        progress(comparison.summary())
    except (LocalTestRecordError, UntestedArtifactsError) as e:
        if not allow_untested:
            raise
        progress(f"warning: promoting untested artifacts, as asked: {e}")

    caller_account(sts)  # fails early, with the fix, on expired credentials
    repository = ensure_repository(ecr, config.repository_name, config.stack_name, progress)
    image_uri = f"{repository['repositoryUri']}:{image.tag}"
    if image_in_repository(ecr, config.repository_name, image.tag):
        progress(f"{image_uri} is in ECR already")
    else:
        progress(f"pushing {config.local_image} ({image.image_id}) to {image_uri}")
        push_image(image, repository["repositoryUri"], ecr.get_authorization_token()["authorizationData"][0])
    digest = verify_pushed_image(ecr, config.repository_name, image.tag, image.image_id)
    progress(f"ECR holds the local image under {image.tag} (manifest {digest})")

    outputs = deploy_stack(
        config.deploy_config(image.tag), session=session, allow_aws=allow_aws, timeout_s=timeout_s, progress=progress
    )
    return PromotionResult(
        outputs=outputs,
        image_uri=image_uri,
        image_digest=digest,
        endpoint_name=outputs.get("ModelEndpointName", config.endpoint_name),
        state_machine_arn=outputs.get("StateMachineArn"),
    )


def teardown_promotion(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    repository: str = "",
    keep_repository: bool = False,
    session: boto3.Session | None = None,
    allow_aws: bool = False,
    timeout_s: float = 3600.0,
    progress: Callable[[str], None] = logger.info,
) -> None:
    """Delete everything `promote` created, writers first (deploy.teardown_stack): the SageMaker
    endpoint, endpoint config and model, then the buckets' objects (data capture included), the stack
    and the artifact bucket, then the ECR repository (or, when it is kept or not promote's, the images
    promote pushed). Checks the endpoint is gone. Safe to run twice."""
    session = session or promotion_session()
    cfn, _, _, ecr, sagemaker = _aws_clients(session, allow_aws, "ecr", "sagemaker")
    deadline = time.monotonic() + timeout_s
    endpoint = stack_resource_id(cfn, stack_name, "Endpoint") if stack_status(cfn, stack_name) else None
    teardown_stack(stack_name, session=session, allow_aws=allow_aws, timeout_s=timeout_s, progress=progress)
    if endpoint:
        # The physical ID is the endpoint's ARN; its name is the last part.
        wait_until_endpoint_deleted(sagemaker, endpoint.rsplit("/", 1)[-1], deadline, progress)
    remove_repository_images(ecr, repository or default_repository(stack_name), stack_name, keep_repository, progress)


def wait_until_endpoint_deleted(sagemaker, name: str, deadline: float, progress: Callable[[str], None]) -> None:
    delay_s = 15
    attempts = max(1, int((deadline - time.monotonic()) // delay_s))
    try:
        sagemaker.get_waiter("endpoint_deleted").wait(
            EndpointName=name, WaiterConfig={"Delay": delay_s, "MaxAttempts": attempts}
        )
    except WaiterError as e:
        raise TeardownIncompleteError(
            f"SageMaker endpoint {name} still exists after the stack's deletion ({e}); it is billed by the hour: "
            f"delete it with `aws sagemaker delete-endpoint --endpoint-name {name}`"
        ) from e
    progress(f"SageMaker endpoint {name} is gone")


# --- Command line ------------------------------------------------------------------------------

EXIT_FAILED = 1  # a failure, or artifacts that are not the tested ones
EXIT_ENVIRONMENT = 3  # credentials, Docker, the image, the model or the local test's record is missing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    target.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION or the profile's)")
    target.add_argument("--repository", default="", help="ECR repository (default: <stack-name>-model)")
    target.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for CloudFormation")
    build = argparse.ArgumentParser(add_help=False)
    build.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="model.tar.gz (default: %(default)s)")
    build.add_argument("--image", default=DEFAULT_LOCAL_IMAGE, help="local model image (default: %(default)s)")
    build.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME)
    build.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE)
    build.add_argument(
        "--threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD, help="minimum top class probability, 0..1"
    )
    build.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST_PATH,
        help="the local test's record of artifact hashes (default: %(default)s, written by `scones deploy`)",
    )
    build.add_argument(
        "--allow-untested", action="store_true", help="go on even if the artifacts are not the tested ones"
    )
    aws = argparse.ArgumentParser(add_help=False)
    aws.add_argument("--yes-really-aws", action="store_true", help="allow the target to be real AWS (it costs money)")

    parser = argparse.ArgumentParser(
        prog="python -m cloud.promote",
        description="Promote the artifacts tested on the emulator to AWS: the model image to ECR, model.tar.gz "
        "and the stack with the SageMaker endpoint. Start with dry-run.",
        epilog="Exit status: 0 ok; 1 failed, or the artifacts are not the tested ones; 2 usage; 3 something is "
        "missing (credentials, Docker, image, model, the local test's record).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dry_run = commands.add_parser(
        "dry-run",
        parents=[target, build],
        help="print what would be created and the artifacts' hashes, and check them against the local test",
    )
    dry_run.add_argument(
        "--lookup", action="store_true", help="read the account, stack and repository from AWS (read-only calls)"
    )
    commands.add_parser("deploy", parents=[target, build, aws], help="push, upload and deploy to AWS")
    teardown = commands.add_parser("teardown", parents=[target, aws], help="delete the stack, endpoint and images")
    teardown.add_argument("--keep-repository", action="store_true", help="keep the ECR repository (images go)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> PromotionConfig:
    return PromotionConfig(
        stack_name=args.stack_name,
        model_data_path=args.model,
        local_image=args.image,
        repository=args.repository,
        endpoint_name=args.endpoint_name,
        instance_type=args.instance_type,
        confidence_threshold=args.threshold,
        manifest_path=args.manifest,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    logging.getLogger("cloud.deploy").setLevel(logging.INFO)
    try:
        session = promotion_session(args.region)
        if args.command == "dry-run":
            plan = plan_promotion(config_from_args(args), session=session, lookup=args.lookup)
            print(format_plan(plan))
            return 0 if plan.proven or args.allow_untested else EXIT_FAILED
        if args.command == "deploy":
            result = promote(
                config_from_args(args),
                session=session,
                allow_aws=args.yes_really_aws,
                allow_untested=args.allow_untested,
                timeout_s=args.timeout,
            )
            print(json.dumps(result.summary(), indent=2))
        else:
            teardown_promotion(
                args.stack_name,
                repository=args.repository,
                keep_repository=args.keep_repository,
                session=session,
                allow_aws=args.yes_really_aws,
                timeout_s=args.timeout,
            )
    except (PromotionEnvironmentError, RealAwsRefusedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except (DeployError, BotoCoreError, ClientError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
