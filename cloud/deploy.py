"""Deploy the workflow's stack, and tear it down: the artifact bucket, the content-addressed artifacts
(cloud/artifacts.py), the template through a change set (cloud/stack.py), the manifest of what was deployed.

The same code deploys to an emulator and to AWS; the AwsTarget says which (cloud/aws.py), and refuses
real AWS unless it was asked for. `scones deploy` and `scones teardown` are the command line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from cloud import guardrails, manifest
from cloud.artifacts import REPOSITORY, SourceTree, artifact_digests, build_artifacts
from cloud.aws import AwsTarget
from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_STACK_NAME,
)
from cloud.errors import DeployError
from cloud.stack import apply_change_set, stack_outputs, stack_resource_id, stack_status, wait_for_stack
from local_model.settings import ENDPOINT_NAME_PATTERN

logger = logging.getLogger(__name__)

# Function names are "<stack>-filter-low-confidence" (22 characters) and at most 64 long.
STACK_NAME_PATTERN = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{0,41}$")
# The clients every deploy and teardown uses, made (and real AWS refused) before any work.
STACK_SERVICES = ("cloudformation", "s3", "sts")


def artifact_bucket_name(stack_name: str, account_id: str, region: str) -> str:
    """Globally unique on AWS, yet found again by teardown without any state kept locally."""
    digest = hashlib.sha256(f"{account_id}/{region}/{stack_name}".encode()).hexdigest()[:12]
    return f"{stack_name.lower()[:30]}-artifacts-{digest}"


# --- Deploy ------------------------------------------------------------------------------------

UPLOAD_TRIGGER_PREFIX = "images/"  # where uploaded images go; the template's UploadTriggerPrefix default


@dataclass(frozen=True)
class DeployConfig:
    """What differs between deployments. Off AWS, `model_endpoint_url` names the local model server."""

    stack_name: str = DEFAULT_STACK_NAME
    model_endpoint_name: str = DEFAULT_ENDPOINT_NAME
    model_endpoint_url: str = ""
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    log_retention_days: int = 14
    # On AWS: the SageMaker model, endpoint configuration and endpoint, from an ECR image and a
    # model.tar.gz that deploy uploads to the artifact bucket.
    create_model_endpoint: bool = False
    model_image_repository: str = ""
    model_image_tag: str = ""
    # The model.tar.gz the endpoint serves; off AWS, the one the local model server serves, which is
    # then only recorded in the manifest (deploy_stack's manifest_path), not uploaded.
    model_data_path: Path | None = None
    endpoint_instance_type: str = DEFAULT_INSTANCE_TYPE
    data_capture_sampling_percentage: int = 100
    # The endpoint's autoscaling (target tracking on invocations per instance per minute).
    endpoint_min_instances: int = 1
    endpoint_max_instances: int = 4
    endpoint_invocations_per_instance: int = 6000
    # The classifier's reserved concurrency (the template's ClassifyImageReservedConcurrency); 0: none.
    classifier_reserved_concurrency: int = 32
    # Monitoring: the functions' metrics namespace, and the share of images rejected as low confidence over
    # 15 minutes above which the LowConfidenceRateAlarm fires (the template's defaults).
    metrics_namespace: str = "SconesUnlimited"
    low_confidence_alarm_rate: float = guardrails.LOW_CONFIDENCE_RATE
    # A model update on AWS (the endpoint's DeploymentConfig): a canary of this share of the capacity, baked
    # this long, then the rest; rolled back by the low-confidence, error-rate and latency alarms
    # (cloud/guardrails.py holds their thresholds, which `scones deploy --canary` applies locally).
    model_error_alarm_rate: float = guardrails.ERROR_RATE
    model_latency_alarm_ms: float = guardrails.LATENCY_P99_MS
    canary_traffic_percent: int = 10
    canary_bake_seconds: int = 600
    update_termination_wait_seconds: int = 600
    update_maximum_seconds: int = 3600
    # An upload under upload_trigger_prefix starts an execution (the template's UploadTrigger rule).
    upload_trigger: bool = True
    upload_trigger_prefix: str = UPLOAD_TRIGGER_PREFIX
    # Where the template, the handlers and the state machines are read from (a copy in the watch tests).
    sources: SourceTree = REPOSITORY

    def check(self) -> None:
        if not STACK_NAME_PATTERN.match(self.stack_name):
            raise DeployError(
                f"stack name {self.stack_name!r} must start with a letter, hold only letters, digits "
                "and hyphens, and be at most 42 characters long (function names derive from it)"
            )
        if not ENDPOINT_NAME_PATTERN.match(self.model_endpoint_name):
            raise DeployError(
                f"endpoint name {self.model_endpoint_name!r} must be lower-case letters, digits and hyphens "
                "(at most 63, starting and ending with a letter or digit)"
            )
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise DeployError(f"confidence threshold {self.confidence_threshold} is outside [0, 1]")
        if self.classifier_reserved_concurrency < 0:
            raise DeployError(
                f"classifier reserved concurrency {self.classifier_reserved_concurrency} is negative (0 reserves none)"
            )
        if not 1 <= self.endpoint_min_instances <= self.endpoint_max_instances:
            raise DeployError(
                f"endpoint instances: min {self.endpoint_min_instances} and max {self.endpoint_max_instances} "
                "must satisfy 1 <= min <= max"
            )
        if self.create_model_endpoint:
            missing = [
                name
                for name in ("model_image_repository", "model_image_tag", "model_data_path")
                if not getattr(self, name)
            ]
            if missing:
                raise DeployError(f"creating the SageMaker endpoint needs {', '.join(missing)}")
            if self.model_endpoint_url:
                raise DeployError("model_endpoint_url is for a local model server, not a SageMaker endpoint")


def stack_parameters(config: DeployConfig, bucket: str, keys: dict[str, str]) -> list[dict]:
    values = {
        "ArtifactBucket": bucket,
        **keys,
        "ModelEndpointName": config.model_endpoint_name,
        "ModelEndpointUrl": config.model_endpoint_url,
        "ConfidenceThreshold": repr(float(config.confidence_threshold)),
        "LogRetentionDays": str(config.log_retention_days),
        "CreateModelEndpoint": "true" if config.create_model_endpoint else "false",
        "ModelImageRepository": config.model_image_repository,
        "ModelImageTag": config.model_image_tag,
        "EndpointInstanceType": config.endpoint_instance_type,
        "DataCaptureSamplingPercentage": str(config.data_capture_sampling_percentage),
        "EndpointMinInstances": str(config.endpoint_min_instances),
        "EndpointMaxInstances": str(config.endpoint_max_instances),
        "EndpointInvocationsPerInstance": str(config.endpoint_invocations_per_instance),
        "ClassifyImageReservedConcurrency": str(config.classifier_reserved_concurrency),
        "UploadTrigger": "true" if config.upload_trigger else "false",
        "UploadTriggerPrefix": config.upload_trigger_prefix,
        "MetricsNamespace": config.metrics_namespace,
        "LowConfidenceAlarmRate": repr(float(config.low_confidence_alarm_rate)),
        "ModelErrorAlarmRate": repr(float(config.model_error_alarm_rate)),
        "ModelLatencyAlarmMicroseconds": str(round(config.model_latency_alarm_ms * 1000)),
        "CanaryTrafficPercent": str(config.canary_traffic_percent),
        "CanaryBakeSeconds": str(config.canary_bake_seconds),
        "UpdateTerminationWaitSeconds": str(config.update_termination_wait_seconds),
        "UpdateMaximumSeconds": str(config.update_maximum_seconds),
        # A shadow challenger on AWS is not promoted yet (docs/rollout.md): the template supports one.
        "ChallengerModelDataKey": "",
    }
    values.setdefault("ModelDataKey", "")
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def deploy_stack(
    config: DeployConfig,
    target: AwsTarget,
    *,
    manifest_path: Path | None = None,
    model_image_id: str | None = None,
) -> dict[str, str]:
    """Build and upload the artifacts, create or update the stack through a change set, wait for
    it, and return its outputs. Refuses real AWS unless the target allows it.

    With `manifest_path`, a deployment that succeeded records there the sha256 of every artifact it
    used (model.tar.gz when `config.model_data_path` is set, the serving image's ID when given), so
    that a promotion to AWS can prove it ships the same ones (cloud/promote.py)."""
    config.check()
    target.check(*STACK_SERVICES)
    s3, progress, deadline = target.client("s3"), target.progress, target.deadline()

    bucket = artifact_bucket_name(config.stack_name, target.account_id, target.region)
    ensure_bucket(s3, bucket, target.region, target.partition)
    artifacts = build_artifacts(config.model_data_path, config.sources)
    keys = {}
    for parameter, artifact in artifacts.items():
        if parameter == "ModelDataKey" and not config.create_model_endpoint:
            continue  # served by the local model server, not by SageMaker
        uploaded = upload_if_missing(s3, bucket, artifact.key, artifact.data)
        keys[parameter] = artifact.key
        what = "uploaded" if uploaded else "unchanged"
        progress(f"{what} {artifact.name} ({len(artifact.data)} bytes, sha256 {artifact.sha256[:12]})")

    parameters = stack_parameters(config, bucket, keys)
    apply_change_set(target, config.stack_name, config.sources.template.read_text(), parameters, deadline)
    if manifest_path is not None:
        record = manifest.Manifest(
            artifacts=artifact_digests(artifacts, model_image_id, config.sources),
            target=target.client("cloudformation").meta.endpoint_url,
            stack_name=config.stack_name,
            region=target.region,
        )
        progress(f"recorded the artifacts' sha256 in {manifest.write_manifest(manifest_path, record)}")
    return stack_outputs(target, config.stack_name)


def tls_only_policy(bucket: str, partition: str = "aws") -> str:
    """A bucket policy that denies every request not made over TLS (as the template's ImageBucketPolicy)."""
    arn = f"arn:{partition}:s3:::{bucket}"
    statement = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def ensure_bucket(s3, bucket: str, region: str, partition: str = "aws") -> None:
    """Create the artifact bucket unless it exists: private, and TLS only (set again on an existing
    bucket, so that one created before the policy existed gets it too)."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
        # us-east-1 is the one region that rejects its own name as a location constraint.
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    s3.put_bucket_policy(Bucket=bucket, Policy=tls_only_policy(bucket, partition))


def upload_if_missing(s3, bucket: str, key: str, data: bytes) -> bool:
    """Upload unless the (content-addressed) key exists; return whether it was uploaded."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return False
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchKey"):
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return True


# --- Teardown ----------------------------------------------------------------------------------


def teardown_stack(target: AwsTarget, stack_name: str = DEFAULT_STACK_NAME) -> None:
    """Delete everything deploy_stack created, writers before what they write to: the SageMaker
    endpoint first (it writes data capture into the image bucket until it is gone, so emptying the
    bucket earlier would lose the race and the stack's deletion would fail on a bucket that is not
    empty), then the image bucket's objects and the stack, last the artifact bucket. Safe to run twice."""
    target.check(*STACK_SERVICES)
    cfn, s3, progress, deadline = (
        target.client("cloudformation"),
        target.client("s3"),
        target.progress,
        target.deadline(),
    )

    if stack_status(cfn, stack_name) is not None:
        if stack_resource_id(cfn, stack_name, "Endpoint"):
            remove_model_endpoint(target, stack_name, deadline)
        image_bucket = stack_resource_id(cfn, stack_name, "ImageBucket")
        if image_bucket:
            progress(f"emptied s3://{image_bucket} ({empty_bucket(s3, image_bucket)} objects)")
        cfn.delete_stack(StackName=stack_name)
        wait_for_stack(target, stack_name, deadline)
        progress(f"deleted stack {stack_name}")
    bucket = artifact_bucket_name(stack_name, target.account_id, target.region)
    try:
        removed = empty_bucket(s3, bucket)
        s3.delete_bucket(Bucket=bucket)
        progress(f"deleted s3://{bucket} ({removed} artifacts)")
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchBucket":
            raise


def remove_model_endpoint(target: AwsTarget, stack_name: str, deadline: float) -> None:
    """Delete the stack's SageMaker model, endpoint configuration and endpoint through CloudFormation
    (the same template and parameters, CreateModelEndpoint false), and wait until they are gone. An
    endpoint deleted behind CloudFormation's back would make the stack's deletion fail (moto measured)."""
    cfn = target.client("cloudformation")
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    parameters = [
        {"ParameterKey": "CreateModelEndpoint", "ParameterValue": "false"}
        if p["ParameterKey"] == "CreateModelEndpoint"
        else {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
        for p in stack.get("Parameters", [])
    ]
    target.progress(
        f"deleting the SageMaker endpoint of {stack_name} (the data capture writer) before emptying the buckets"
    )
    cfn.update_stack(
        StackName=stack_name, UsePreviousTemplate=True, Parameters=parameters, Capabilities=["CAPABILITY_IAM"]
    )
    wait_for_stack(target, stack_name, deadline)


def empty_bucket(s3, bucket: str) -> int:
    """Delete every object and object version in `bucket`; return how many."""
    removed = 0
    try:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:
            batch = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if batch:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                removed += len(batch)
    except ClientError as e:
        if e.response["Error"]["Code"] == "NoSuchBucket":
            return removed
        raise
    return removed
