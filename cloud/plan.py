"""What a promotion to AWS would create and ship, and the proof that it is what was tested on the
emulator: the promotion's configuration, the template's resources, the artifacts' digests compared with the
manifest the emulator deploy recorded, and the dry run's text. Makes no AWS call unless asked to look up."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from cloud import manifest
from cloud.artifacts import TEMPLATE_PATH, Artifact, artifact_digests, build_artifacts
from cloud.aws import AwsTarget, is_real_aws_url
from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_LOCAL_IMAGE,
    DEFAULT_STACK_NAME,
    DEFAULT_WORKDIR,
)
from cloud.deploy import DeployConfig, artifact_bucket_name
from cloud.errors import AwsCredentialsMissingError, LocalTestRecordError, PromotionError
from cloud.image import (
    IMAGE_TAG_PREFIX,
    REPOSITORY_PATTERN,
    LocalImage,
    default_repository,
    describe_repository,
    image_in_repository,
    inspect_local_image,
    instance_platform,
    registry_host,
)
from cloud.stack import stack_status
from cloud.template import TemplateError, load_template

# The scones command line's default workdir: `scones train` writes the model there and `scones deploy`
# records the manifest there (tests/unit/cloud/test_plan.py checks these against scones.pipeline.steps).
DEFAULT_MODEL_PATH = DEFAULT_WORKDIR / "model" / "model.tar.gz"
DEFAULT_MANIFEST_PATH = DEFAULT_WORKDIR / manifest.MANIFEST_NAME
CREATE_MODEL_ENDPOINT_PARAMETER = "CreateModelEndpoint"  # "true" turns the SageMaker resources on


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
        notes[manifest.MODEL_DATA] = f"no file at {model_path}: run `scones train` (in the same --workdir)"
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


def plan_promotion(config: PromotionConfig, target: AwsTarget, *, lookup: bool = False) -> PromotionPlan:
    """What `promote` would create and ship, and whether it is what was tested locally. Makes no AWS
    call, and needs no credentials, unless `lookup` (then only read-only calls: STS, CloudFormation and
    ECR describes)."""
    config.check()
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
        region=target.region,
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
    return look_up_target(plan, target)


def look_up_target(plan: PromotionPlan, target: AwsTarget) -> PromotionPlan:
    """The plan completed with read-only calls: account, whether the stack, repository and image exist."""
    found: dict[str, str] = {}
    try:
        target.require_credentials()
        account_id = target.account_id
    except (AwsCredentialsMissingError, BotoCoreError) as e:
        found["lookup"] = f"skipped: {e}"
        return replace(plan, found=found)
    cfn, ecr = target.client("cloudformation"), target.client("ecr")
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
    return replace(plan, account_id=account_id, registry=registry_host(target), found=found)


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
