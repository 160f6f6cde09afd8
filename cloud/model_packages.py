"""The workdir's model versions (scones/pipeline/registry.py) on AWS: a SageMaker Model Package Group per stack,
`<stack>-models`, one model package per version. A package names the serving image and the version's
model.tar.gz, carries the version id, its confidence threshold, its data hash and its validation accuracy as
CustomerMetadataProperties, and the champion is the one Approved package (the others wait as
PendingManualApproval). Publishing is idempotent: a version already in the group is found by its id and only
its approval status is brought up to date.

Not yet called by the promotion (cloud/promote.py ships one model); tested with moto
(tests/unit/cloud/test_model_packages.py). docs/rollout.md says how the pieces map.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from cloud.aws import AwsTarget

VERSION_KEY = "scones:version"  # CustomerMetadataProperties key holding the version id (the tarball's sha256)
APPROVED, PENDING = "Approved", "PendingManualApproval"
CONTENT_TYPES = ["image/png", "image/jpeg", "application/x-image"]
RESPONSE_TYPES = ["application/json"]


@dataclass(frozen=True)
class PackageVersion:
    version_id: str
    model_data_url: str  # s3://bucket/key of the version's model.tar.gz
    threshold: float | None = None
    data_sha256: str | None = None
    validation_accuracy: float | None = None
    champion: bool = False

    def metadata(self) -> dict[str, str]:
        values = {
            VERSION_KEY: self.version_id,
            "scones:threshold": self.threshold,
            "scones:data-sha256": self.data_sha256,
            "scones:validation-accuracy": self.validation_accuracy,
        }
        return {key: str(value) for key, value in values.items() if value is not None}


def group_name(stack_name: str) -> str:
    return f"{stack_name}-models"


def ensure_group(sagemaker, name: str) -> None:
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=name)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
            raise
        sagemaker.create_model_package_group(
            ModelPackageGroupName=name, ModelPackageGroupDescription="scones model versions (scones models)"
        )


def published_versions(sagemaker, name: str) -> dict[str, dict]:
    """The group's packages by version id: {"arn": ..., "status": ...}."""
    found = {}
    for page in sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=name):
        for summary in page["ModelPackageSummaryList"]:
            described = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            version = (described.get("CustomerMetadataProperties") or {}).get(VERSION_KEY)
            if version:
                found[version] = {"arn": summary["ModelPackageArn"], "status": described["ModelApprovalStatus"]}
    return found


def publish_versions(target: AwsTarget, stack_name: str, image_uri: str, versions: list[PackageVersion]) -> dict:
    """Create the group if needed and a package for each version not in it yet; approve the champion and set
    the others pending. The packages' ARNs by version id."""
    sagemaker = target.client("sagemaker")
    name = group_name(stack_name)
    ensure_group(sagemaker, name)
    known = published_versions(sagemaker, name)
    arns = {}
    for version in versions:
        status = APPROVED if version.champion else PENDING
        if version.version_id in known:
            arns[version.version_id] = known[version.version_id]["arn"]
            if known[version.version_id]["status"] != status:
                sagemaker.update_model_package(ModelPackageArn=arns[version.version_id], ModelApprovalStatus=status)
            continue
        created = sagemaker.create_model_package(
            ModelPackageGroupName=name,
            ModelPackageDescription=f"model version {version.version_id[:12]}",
            InferenceSpecification={
                "Containers": [{"Image": image_uri, "ModelDataUrl": version.model_data_url}],
                "SupportedContentTypes": CONTENT_TYPES,
                "SupportedResponseMIMETypes": RESPONSE_TYPES,
            },
            ModelApprovalStatus=status,
            CustomerMetadataProperties=version.metadata(),
        )
        arns[version.version_id] = created["ModelPackageArn"]
    return arns
