"""cloud/model_packages.py on moto: the workdir's versions as a Model Package Group, champion approved."""

from __future__ import annotations

import boto3
from conftest import use_offline_aws
from moto import mock_aws

from cloud.aws import AwsTarget
from cloud.model_packages import APPROVED, PENDING, PackageVersion, group_name, publish_versions

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/scones-model:sha256-0123"


def target() -> AwsTarget:
    return AwsTarget(boto3.Session(), allow_aws=True, timeout_s=60, progress=lambda _: None)


def statuses(sagemaker) -> dict[str, str]:
    packages = sagemaker.list_model_packages(ModelPackageGroupName=group_name("scones"))["ModelPackageSummaryList"]
    return {p["ModelPackageArn"]: p["ModelApprovalStatus"] for p in packages}


def test_versions_become_packages_and_the_champion_is_the_approved_one(monkeypatch):
    use_offline_aws(monkeypatch, "us-east-1")
    a = PackageVersion("a" * 64, "s3://artifacts/models/a.tar.gz", 0.93, "d" * 64, 0.91, champion=True)
    b = PackageVersion("b" * 64, "s3://artifacts/models/b.tar.gz")
    with mock_aws():
        arns = publish_versions(target(), "scones", IMAGE, [a, b])
        sagemaker = boto3.client("sagemaker")
        assert statuses(sagemaker) == {arns[a.version_id]: APPROVED, arns[b.version_id]: PENDING}
        described = sagemaker.describe_model_package(ModelPackageName=arns[a.version_id])
        assert described["CustomerMetadataProperties"] == {
            "scones:version": a.version_id,
            "scones:threshold": "0.93",
            "scones:data-sha256": "d" * 64,
            "scones:validation-accuracy": "0.91",
        }
        container = described["InferenceSpecification"]["Containers"][0]
        assert (container["Image"], container["ModelDataUrl"]) == (IMAGE, a.model_data_url)

        # Again, with b the champion now: no new package, the approvals follow.
        again = publish_versions(
            target(),
            "scones",
            IMAGE,
            [
                PackageVersion(a.version_id, a.model_data_url),
                PackageVersion(b.version_id, b.model_data_url, champion=True),
            ],
        )
        assert again == arns
        assert statuses(sagemaker) == {arns[a.version_id]: PENDING, arns[b.version_id]: APPROVED}
