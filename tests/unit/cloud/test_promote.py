"""The promotion and its teardown (cloud/promote.py) on moto: ECR, S3, CloudFormation and SageMaker, with a fake
`docker`; what is refused before anything is created. No network, no Docker daemon, no AWS account."""

from __future__ import annotations

import hashlib

import boto3
import botocore.client
import pytest
from moto import mock_aws

from cloud import deploy, promote
from cloud.aws import AwsTarget
from cloud.errors import (
    ImageVerificationError,
    RealAwsRefusedError,
    TeardownIncompleteError,
    UntestedArtifactsError,
)
from cloud.image import (
    ensure_repository,
)
from cloud.stack import stack_resource_id, stack_status
from tests.helpers.moto_tls import moto_sees_tls  # noqa: F401 (an autouse fixture)
from tests.helpers.promotion_helpers import (
    EMULATOR,
    IMAGE_ID,
    config_for,
    moto_target,
    record_local_test,
    registry_receives,
    run_cli,
)

pytestmark = pytest.mark.usefixtures("promotion_aws")


# --- Promotion and teardown on moto ------------------------------------------------------------


def test_promotion_pushes_uploads_deploys_and_teardown_removes_everything(docker, registry, model, tmp_path):
    config = config_for(model, tmp_path, instance_type="ml.c5.xlarge", data_capture_sampling_percentage=30)
    record_local_test(config)
    said = []
    with mock_aws():
        result = promote.promote(config, moto_target(said.append))
        ecr, sagemaker, s3, cfn = (boto3.client(n) for n in ("ecr", "sagemaker", "s3", "cloudformation"))
        account = boto3.client("sts").get_caller_identity()["Account"]

        (repository,) = ecr.describe_repositories()["repositories"]
        assert repository["repositoryName"] == "scones-promo-model"
        assert repository["imageTagMutability"] == "IMMUTABLE"
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        tags = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
        assert {"Key": "scones-stack", "Value": "scones-promo"} in tags
        tag = "sha256-" + IMAGE_ID.removeprefix("sha256:")
        assert result.image_uri == f"{repository['repositoryUri']}:{tag}"
        assert [argv[0] for argv in docker.argvs()] == ["image", "login", "tag", "push", "logout"]
        assert docker.argvs()[3] == ["push", result.image_uri]

        # The stack's SageMaker resources: the pushed image, the uploaded model, data capture on.
        assert cfn.describe_stacks(StackName="scones-promo")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        (endpoint,) = sagemaker.list_endpoints()["Endpoints"]
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint["EndpointName"])
        endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        (variant,) = endpoint_config["ProductionVariants"]
        assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.c5.xlarge", 1)
        image_bucket = stack_resource_id(cfn, "scones-promo", "ImageBucket")
        capture = endpoint_config["DataCaptureConfig"]
        assert capture["EnableCapture"] and capture["InitialSamplingPercentage"] == 30
        assert capture["DestinationS3Uri"] == f"s3://{image_bucket}/data-capture"
        assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
        container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        assert container["Image"] == result.image_uri
        artifact_bucket = deploy.artifact_bucket_name("scones-promo", account, "eu-west-1")
        model_key = f"artifacts/model/{hashlib.sha256(model.read_bytes()).hexdigest()}.tar.gz"
        assert container["ModelDataUrl"] == f"s3://{artifact_bucket}/{model_key}"
        assert s3.get_object(Bucket=artifact_bucket, Key=model_key)["Body"].read() == model.read_bytes()
        assert f"identical to the artifacts tested locally on {EMULATOR}" in said[0]

        # Promoting again pushes nothing: the tag is the image ID, and it is there.
        promote.promote(config, moto_target(said.append))
        assert [argv[0] for argv in docker.argvs()].count("push") == 1

        s3.put_object(Bucket=image_bucket, Key="data-capture/AllTraffic/x.jsonl", Body=b"{}")
        promote.teardown_promotion(moto_target(said.append), "scones-promo")
        assert stack_status(cfn, "scones-promo") is None
        assert sagemaker.list_endpoints()["Endpoints"] == []
        assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
        assert sagemaker.list_models()["Models"] == []
        assert ecr.describe_repositories()["repositories"] == []
        assert s3.list_buckets()["Buckets"] == []
        assert any(line.endswith("is gone") and "SageMaker endpoint" in line for line in said)
        promote.teardown_promotion(moto_target(said.append), "scones-promo")  # twice


def test_untested_artifacts_are_refused_before_anything_is_created(docker, registry, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config)
    model.write_bytes(b"a model nobody tested")
    with mock_aws():
        with pytest.raises(UntestedArtifactsError, match=r"model\.tar\.gz differs"):
            promote.promote(config, moto_target(lambda _: None))
        assert boto3.client("ecr").describe_repositories()["repositories"] == []
        assert boto3.client("s3").list_buckets()["Buckets"] == []
        promote.promote(config, moto_target(lambda _: None), allow_untested=True)
        assert boto3.client("sagemaker").list_endpoints()["Endpoints"]


def test_an_image_in_ecr_that_is_not_the_local_one_is_refused(docker, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config)
    tag = "sha256-" + IMAGE_ID.removeprefix("sha256:")
    with mock_aws():
        ecr = boto3.client("ecr")
        ensure_repository(ecr, "scones-promo-model", "scones-promo")
        registry_receives(ecr, "scones-promo-model", tag, "sha256:" + "f" * 64)
        with pytest.raises(ImageVerificationError, match="is not the local image"):
            promote.promote(config, moto_target(lambda _: None))
        assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []


def test_real_aws_is_refused_unless_asked_for_before_any_call(docker, model, tmp_path, monkeypatch):
    config = config_for(model, tmp_path)
    record_local_test(config)
    with mock_aws():
        with pytest.raises(RealAwsRefusedError, match="refusing to touch real AWS"):
            promote.promote(config, AwsTarget())
        with pytest.raises(RealAwsRefusedError):
            promote.teardown_promotion(AwsTarget(), "scones-promo")
        # The command line asks for AWS only with --target aws: an emulator target that resolves to AWS is refused.
        monkeypatch.setenv("AWS_ENDPOINT_URL", "https://cloudformation.eu-west-1.amazonaws.com")
        code, _, err = run_cli(["deploy", "--workdir", str(tmp_path)])
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert code == 3
    assert err.startswith("error: AWS_ENDPOINT_URL names real AWS (https://cloudformation.eu-west-1.amazonaws.com)")
    assert docker.calls() == []


def test_aws_without_credentials_is_one_line_with_the_fix(model, tmp_path, monkeypatch, no_network):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for command in ("deploy", "teardown"):
        code, _, err = run_cli([command, "--target", "aws", "--workdir", str(tmp_path)])
        assert code == 3
        assert err.startswith("error: --target aws: no AWS credentials (Unable to locate credentials): run `aws ")
        assert err.endswith("or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run again\n")
        assert err.count("\n") == 1


def test_no_region_is_one_line_with_the_fix(monkeypatch, tmp_path, no_network):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run_cli(["deploy", "--target", "aws", "--dry-run", "--workdir", str(tmp_path)])
    assert (code, err) == (
        3,
        "error: no AWS region configured: set AWS_DEFAULT_REGION or a profile's region "
        "(any region works on an emulator)\n",
    )


def test_teardown_keeping_the_repository_removes_only_the_pushed_images():
    ours = "sha256-" + "1" * 64
    with mock_aws():
        ecr = boto3.client("ecr")
        ensure_repository(ecr, "scones-model", "scones")
        registry_receives(ecr, "scones-model", ours, "sha256:" + "1" * 64)
        registry_receives(ecr, "scones-model", "hand-pushed", "sha256:" + "2" * 64)
        promote.teardown_promotion(moto_target(), keep_repository=True)
        tags = [i.get("imageTag") for i in ecr.list_images(repositoryName="scones-model")["imageIds"]]
        assert tags == ["hand-pushed"]


def test_teardown_keeps_a_repository_promote_did_not_create():
    with mock_aws():
        ecr = boto3.client("ecr")
        ecr.create_repository(repositoryName="scones-model")  # someone else's
        registry_receives(ecr, "scones-model", "sha256-" + "1" * 64, "sha256:" + "1" * 64)
        said = []
        promote.teardown_promotion(moto_target(said.append))
        assert ecr.list_images(repositoryName="scones-model")["imageIds"] == []
    assert "kept the repository (promote did not create it for stack scones)" in said[-1]


def test_teardown_fails_loudly_when_the_endpoint_outlives_the_stack():
    with mock_aws():
        sagemaker, target = boto3.client("sagemaker"), moto_target()
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sagemaker.create_model(ModelName="m", ExecutionRoleArn=role, PrimaryContainer={"Image": "i"})
        variant = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[variant])
        sagemaker.create_endpoint(EndpointName="left-behind", EndpointConfigName="c")
        with pytest.raises(TeardownIncompleteError, match="aws sagemaker delete-endpoint --endpoint-name"):
            promote.wait_until_endpoint_deleted(target, "left-behind", deadline=0)


def test_scones_deploy_to_aws_checks_the_identity_once(docker, registry, model, tmp_path, monkeypatch):
    """The whole `scones deploy --target aws` on moto: one target, so STS is asked once (it used to be three
    times: the command, the promotion and the deploy each asked)."""
    config = config_for(model, tmp_path)
    record_local_test(config)
    operations = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def recording(client, operation, params):
        operations.append(operation)
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    with mock_aws():
        code, out, err = run_cli(
            ["deploy", "--target", "aws", "--workdir", str(tmp_path), "--stack-name", "scones-promo"]
        )
        assert boto3.client("sagemaker").list_endpoints()["Endpoints"]
    assert code == 0, out + err
    assert "identical to the artifacts tested locally" in out
    assert operations.count("GetCallerIdentity") == 1, operations
