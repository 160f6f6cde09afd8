"""Build the workflow's artifacts and deploy or tear down its CloudFormation stack.

The same code deploys to an emulator and to AWS: boto3 takes the target from the environment
(AWS_ENDPOINT_URL, region, credentials). Real AWS is refused unless asked for explicitly
(`allow_aws=True`, `--aws`). Run `python -m cloud.deploy --help`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import logging
import re
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.loaders
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cloud import manifest
from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_STACK_NAME,
)
from cloud.polling import PollTimeoutError, poll

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "cloud" / "template.yaml"
STATE_MACHINE_PATH = ROOT / "statemachine" / "image_classification.asl.json"
BATCH_STATE_MACHINE_PATH = ROOT / "statemachine" / "batch_classification.asl.json"
LAMBDAS_DIR = ROOT / "lambdas"


# Template parameter holding each function's zip key -> the handler module the zip is built around.
LAMBDA_HANDLERS = {
    "SerializeImageDataCodeKey": "serialize_image_data",
    "ClassifyImageCodeKey": "classify_image",
    "FilterLowConfidenceCodeKey": "filter_low_confidence",
    "SummarizeBatchCodeKey": "summarize_batch",
}
# What every zip holds besides its handler: the package marker, the clients, the contract, the loggers.
SHARED_LAMBDA_MODULES = ("__init__.py", "clients.py", "contract.py", "logs.py", "metrics.py")

# Function names are "<stack>-filter-low-confidence" (22 characters) and at most 64 long.
STACK_NAME_PATTERN = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{0,41}$")
# SageMaker's rule, lower case only: SageMaker lower-cases endpoint ARNs and the IAM policy names one.
ENDPOINT_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: builds do not depend on file times


class DeployError(RuntimeError):
    """Deploying or tearing down the stack failed; the message says why and what to do."""


class RealAwsRefusedError(DeployError):
    """The target is real AWS and the caller did not ask for it."""


class StackFailedError(DeployError):
    """CloudFormation could not create, update or delete the stack."""


class DeployTimeoutError(DeployError):
    """The stack did not reach a final state before the deadline."""


# --- Artifacts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    name: str
    data: bytes = field(repr=False)
    suffix: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.name}{self.suffix}"

    @property
    def key(self) -> str:
        """Content-addressed, so a changed artifact gets a new key and CloudFormation sees the change."""
        return f"artifacts/{self.name}/{self.sha256}{self.suffix}"


def build_lambda_zip(handler_module: str, lambdas_dir: Path = LAMBDAS_DIR) -> bytes:
    """The zip of one function: its handler and the shared modules, as package `lambdas`.

    Byte-for-byte reproducible: sorted entries, a fixed date and mode, no compression (the files
    are a few kilobytes, and stored bytes do not depend on the zlib version).
    """
    names = sorted({*SHARED_LAMBDA_MODULES, f"{handler_module}.py"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in names:
            info = zipfile.ZipInfo(f"lambdas/{name}", date_time=_ZIP_DATE)
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # Unix, whatever builds it
            archive.writestr(info, (lambdas_dir / name).read_bytes())
    return buffer.getvalue()


def build_artifacts(model_data_path: Path | None = None) -> dict[str, Artifact]:
    """Every artifact the stack needs, by the template parameter that holds its key; model.tar.gz too
    when a path is given."""
    artifacts = {
        parameter: Artifact(handler, build_lambda_zip(handler), ".zip")
        for parameter, handler in LAMBDA_HANDLERS.items()
    }
    artifacts["StateMachineDefinitionKey"] = Artifact(
        "image_classification", STATE_MACHINE_PATH.read_bytes(), ".asl.json"
    )
    artifacts["BatchStateMachineDefinitionKey"] = Artifact(
        "batch_classification", BATCH_STATE_MACHINE_PATH.read_bytes(), ".asl.json"
    )
    if model_data_path is not None:
        artifacts["ModelDataKey"] = Artifact("model", Path(model_data_path).read_bytes(), ".tar.gz")
    return artifacts


def artifact_digests(artifacts: dict[str, Artifact], model_image_id: str | None = None) -> dict[str, str]:
    """sha256 of everything a deployment ships, by name: the uploaded artifacts, the template and the
    model image's build inputs, and the model image's ID when it is known."""
    digests = {artifact.filename: artifact.sha256 for artifact in artifacts.values()}
    digests[manifest.TEMPLATE] = hashlib.sha256(TEMPLATE_PATH.read_bytes()).hexdigest()
    digests[manifest.MODEL_IMAGE_INPUTS] = manifest.model_image_inputs_sha256()
    if model_image_id:
        digests[manifest.MODEL_IMAGE_ID] = model_image_id
    return digests


# --- Target ------------------------------------------------------------------------------------


def make_client(session: boto3.Session, service: str):
    return session.client(service, config=_CLIENT_CONFIG)


@functools.cache
def aws_domains() -> tuple[str, ...]:
    """DNS suffixes of real AWS endpoints in every partition botocore knows (amazonaws.com, api.aws,
    amazonaws.com.cn, amazonaws.eu, ...), so that a new partition is refused without a code change."""
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    suffixes = {
        partition["outputs"][key]
        for partition in partitions
        for key in ("dnsSuffix", "dualStackDnsSuffix")
        if partition["outputs"].get(key)
    }
    return tuple(sorted(f".{suffix}" for suffix in suffixes))


def is_real_aws_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host.endswith(aws_domains())


def is_real_aws(client) -> bool:
    return is_real_aws_url(client.meta.endpoint_url)


REFUSAL_ADVICE = ": set AWS_ENDPOINT_URL to an emulator, or ask for AWS explicitly (--aws, allow_aws=True)"


def refuse_real_aws(clients: list, allow_aws: bool, advice: str = REFUSAL_ADVICE) -> None:
    """Raise RealAwsRefusedError if any client would reach real AWS and that was not asked for;
    `advice` follows the endpoint in the message."""
    if allow_aws:
        return
    for client in clients:
        if is_real_aws(client):
            raise RealAwsRefusedError(f"refusing to touch real AWS ({client.meta.endpoint_url}){advice}")


def target_clients(session: boto3.Session, allow_aws: bool) -> tuple:
    """CloudFormation, S3 and STS clients for the target, after checking the target may be used."""
    if not session.region_name:
        raise DeployError("no AWS region configured: set AWS_DEFAULT_REGION (any region works on an emulator)")
    clients = tuple(make_client(session, name) for name in ("cloudformation", "s3", "sts"))
    refuse_real_aws(list(clients), allow_aws)
    return clients


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
    low_confidence_alarm_rate: float = 0.3
    # An upload under upload_trigger_prefix starts an execution (the template's UploadTrigger rule).
    upload_trigger: bool = True
    upload_trigger_prefix: str = UPLOAD_TRIGGER_PREFIX

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
    }
    values.setdefault("ModelDataKey", "")
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def deploy_stack(
    config: DeployConfig,
    *,
    session: boto3.Session | None = None,
    allow_aws: bool = False,
    timeout_s: float = 1800.0,
    progress: Callable[[str], None] = logger.info,
    manifest_path: Path | None = None,
    model_image_id: str | None = None,
) -> dict[str, str]:
    """Build and upload the artifacts, create or update the stack through a change set, wait for
    it, and return its outputs. Refuses real AWS unless `allow_aws`.

    With `manifest_path`, a deployment that succeeded records there the sha256 of every artifact it
    used (model.tar.gz when `config.model_data_path` is set, the serving image's ID when given), so
    that a promotion to AWS can prove it ships the same ones (cloud/promote.py)."""
    config.check()
    session = session or boto3.Session()
    cfn, s3, sts = target_clients(session, allow_aws)
    deadline = time.monotonic() + timeout_s

    account_id = sts.get_caller_identity()["Account"]
    bucket = artifact_bucket_name(config.stack_name, account_id, session.region_name)
    ensure_bucket(s3, bucket, session.region_name, session.get_partition_for_region(session.region_name))
    artifacts = build_artifacts(config.model_data_path)
    keys = {}
    for parameter, artifact in artifacts.items():
        if parameter == "ModelDataKey" and not config.create_model_endpoint:
            continue  # served by the local model server, not by SageMaker
        uploaded = upload_if_missing(s3, bucket, artifact.key, artifact.data)
        keys[parameter] = artifact.key
        what = "uploaded" if uploaded else "unchanged"
        progress(f"{what} {artifact.name} ({len(artifact.data)} bytes, sha256 {artifact.sha256[:12]})")

    apply_change_set(
        cfn,
        config.stack_name,
        TEMPLATE_PATH.read_text(),
        stack_parameters(config, bucket, keys),
        deadline,
        progress,
    )
    if manifest_path is not None:
        record = manifest.Manifest(
            artifacts=artifact_digests(artifacts, model_image_id),
            target=cfn.meta.endpoint_url,
            stack_name=config.stack_name,
            region=session.region_name,
        )
        progress(f"recorded the artifacts' sha256 in {manifest.write_manifest(manifest_path, record)}")
    return stack_outputs(config.stack_name, session=session)


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


def apply_change_set(
    cfn,
    stack_name: str,
    template_body: str,
    parameters: list[dict],
    deadline: float,
    progress: Callable[[str], None] = logger.info,
) -> None:
    """Create (or update) the stack through a change set and wait until it is done."""
    status = stack_status(cfn, stack_name)
    if status == "ROLLBACK_COMPLETE":
        # A stack whose creation failed can only be deleted.
        progress(f"deleting {stack_name}, whose creation failed earlier")
        cfn.delete_stack(StackName=stack_name)
        wait_for_stack(cfn, stack_name, deadline, progress)
        status = None
    if status and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack_name} is busy ({status}); wait for it to finish and deploy again")
    change_set_type = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    change_set_name = f"deploy-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    change_set = cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set_name,
        ChangeSetType=change_set_type,
        TemplateBody=template_body,
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
        Tags=[{"Key": "project", "Value": "scones-unlimited"}],
    )
    change_set_id = change_set["Id"]
    described = wait_for_change_set(cfn, change_set_id, stack_name, deadline)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_name)
            progress(f"{stack_name} is up to date")
            return
        raise StackFailedError(f"change set for {stack_name} failed: {reason}")
    progress(f"{change_set_type.lower()} {stack_name}: {len(described.get('Changes', []))} resource changes")
    cfn.execute_change_set(ChangeSetName=change_set_id, StackName=stack_name)
    wait_for_stack(cfn, stack_name, deadline, progress)


def stack_status(cfn, stack_name: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    except ClientError as e:
        if "does not exist" in e.response["Error"].get("Message", ""):
            return None
        raise


# Short first waits for emulators, then back off towards AWS's pace.
STACK_POLL = {"interval_s": 0.25, "max_interval_s": 5.0}


def _until(deadline: float) -> float:
    return deadline - time.monotonic()


def wait_for_change_set(cfn, change_set_id: str, stack_name: str, deadline: float) -> dict:
    try:
        return poll(
            lambda: cfn.describe_change_set(ChangeSetName=change_set_id, StackName=stack_name),
            lambda described: described["Status"] in ("CREATE_COMPLETE", "FAILED"),
            timeout_s=_until(deadline),
            **STACK_POLL,
        )
    except PollTimeoutError as e:
        raise DeployTimeoutError(f"change set for {stack_name} still {e.last['Status']} at the deadline") from None


def wait_for_stack(cfn, stack_name: str, deadline: float, progress: Callable[[str], None] = logger.info) -> str:
    """Wait until the stack is in a final state; return it, or raise StackFailedError with the reasons."""
    try:
        status = poll(
            lambda: stack_status(cfn, stack_name),
            lambda status: status is None or not status.endswith("_IN_PROGRESS"),
            timeout_s=_until(deadline),
            **STACK_POLL,
        )
    except PollTimeoutError as e:
        raise DeployTimeoutError(f"stack {stack_name} still {e.last} at the deadline") from None
    if status in (None, "DELETE_COMPLETE"):
        return "DELETE_COMPLETE"
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
        progress(f"{stack_name}: {status}")
        return status
    raise StackFailedError(f"stack {stack_name} ended {status}: {failure_reasons(cfn, stack_name)}")


def failure_reasons(cfn, stack_name: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except ClientError:
        return "(no stack events)"
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', e['ResourceStatus'])}"
        for e in events
        if e["ResourceStatus"].endswith("_FAILED")
    ]
    return "; ".join(reversed(reasons[:10])) or "(no failed resources reported)"


def stack_outputs(stack_name: str = DEFAULT_STACK_NAME, *, session: boto3.Session | None = None) -> dict[str, str]:
    cfn = make_client(session or boto3.Session(), "cloudformation")
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


# --- Teardown ----------------------------------------------------------------------------------


def teardown_stack(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    session: boto3.Session | None = None,
    allow_aws: bool = False,
    timeout_s: float = 1800.0,
    progress: Callable[[str], None] = logger.info,
) -> None:
    """Delete everything deploy_stack created, writers before what they write to: the SageMaker
    endpoint first (it writes data capture into the image bucket until it is gone, so emptying the
    bucket earlier would lose the race and the stack's deletion would fail on a bucket that is not
    empty), then the image bucket's objects and the stack, last the artifact bucket. Safe to run twice."""
    session = session or boto3.Session()
    cfn, s3, sts = target_clients(session, allow_aws)
    deadline = time.monotonic() + timeout_s

    if stack_status(cfn, stack_name) is not None:
        if stack_resource_id(cfn, stack_name, "Endpoint"):
            remove_model_endpoint(cfn, stack_name, deadline, progress)
        image_bucket = stack_resource_id(cfn, stack_name, "ImageBucket")
        if image_bucket:
            progress(f"emptied s3://{image_bucket} ({empty_bucket(s3, image_bucket)} objects)")
        cfn.delete_stack(StackName=stack_name)
        wait_for_stack(cfn, stack_name, deadline, progress)
        progress(f"deleted stack {stack_name}")
    account_id = sts.get_caller_identity()["Account"]
    bucket = artifact_bucket_name(stack_name, account_id, session.region_name)
    try:
        removed = empty_bucket(s3, bucket)
        s3.delete_bucket(Bucket=bucket)
        progress(f"deleted s3://{bucket} ({removed} artifacts)")
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchBucket":
            raise


def remove_model_endpoint(cfn, stack_name: str, deadline: float, progress: Callable[[str], None]) -> None:
    """Delete the stack's SageMaker model, endpoint configuration and endpoint through CloudFormation
    (the same template and parameters, CreateModelEndpoint false), and wait until they are gone. An
    endpoint deleted behind CloudFormation's back would make the stack's deletion fail (moto measured)."""
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    parameters = [
        {"ParameterKey": "CreateModelEndpoint", "ParameterValue": "false"}
        if p["ParameterKey"] == "CreateModelEndpoint"
        else {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
        for p in stack.get("Parameters", [])
    ]
    progress(f"deleting the SageMaker endpoint of {stack_name} (the data capture writer) before emptying the buckets")
    cfn.update_stack(
        StackName=stack_name, UsePreviousTemplate=True, Parameters=parameters, Capabilities=["CAPABILITY_IAM"]
    )
    wait_for_stack(cfn, stack_name, deadline, progress)


def stack_resource_id(cfn, stack_name: str, logical_id: str) -> str | None:
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            if resource["LogicalResourceId"] == logical_id:
                return resource.get("PhysicalResourceId") or None
    return None


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


# --- Command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cloud.deploy",
        description="Deploy or tear down the Scones workflow stack. The target comes from the environment "
        "(AWS_ENDPOINT_URL for an emulator); real AWS needs --aws.",
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument("--aws", action="store_true", help="allow the target to be real AWS")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for CloudFormation")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the artifacts and print their keys and hashes")
    deploy = commands.add_parser("deploy", help="create or update the stack and print its outputs")
    deploy.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME, help="SageMaker endpoint name")
    deploy.add_argument(
        "--endpoint-url", default="", help="off AWS: URL of the local model server standing in for SageMaker"
    )
    deploy.add_argument(
        "--threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD, help="minimum top class probability, 0..1"
    )
    deploy.add_argument("--create-model-endpoint", action="store_true", help="on AWS: create the endpoint")
    deploy.add_argument("--model-image-repository", default="", help="ECR repository of the serving image")
    deploy.add_argument("--model-image-tag", default="", help="tag of the serving image")
    deploy.add_argument(
        "--model-data", type=Path, help="model.tar.gz to serve (off AWS: the local model server's, for --manifest)"
    )
    deploy.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE)
    deploy.add_argument(
        "--classifier-concurrency",
        type=int,
        default=DeployConfig.classifier_reserved_concurrency,
        help="concurrent executions reserved for the classifier Lambda (0: none)",
    )
    deploy.add_argument(
        "--manifest",
        type=Path,
        help=f"record the artifacts' sha256 here (.scones/{manifest.MANIFEST_NAME}: what `cloud.promote` checks)",
    )
    commands.add_parser("outputs", help="print the stack's outputs")
    commands.add_parser("teardown", help="delete the stack, its bucket's objects and the artifacts")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    try:
        if args.command == "build":
            artifacts = {p: {"key": a.key, "sha256": a.sha256} for p, a in build_artifacts().items()}
            print(json.dumps(artifacts, indent=2))
        elif args.command == "deploy":
            config = DeployConfig(
                stack_name=args.stack_name,
                model_endpoint_name=args.endpoint_name,
                model_endpoint_url=args.endpoint_url,
                confidence_threshold=args.threshold,
                create_model_endpoint=args.create_model_endpoint,
                model_image_repository=args.model_image_repository,
                model_image_tag=args.model_image_tag,
                model_data_path=args.model_data,
                endpoint_instance_type=args.instance_type,
                classifier_reserved_concurrency=args.classifier_concurrency,
            )
            logger.info("deploying %s", json.dumps(asdict(config), default=str))
            outputs = deploy_stack(config, allow_aws=args.aws, timeout_s=args.timeout, manifest_path=args.manifest)
            print(json.dumps(outputs, indent=2))
        elif args.command == "outputs":
            print(json.dumps(stack_outputs(args.stack_name), indent=2))
        elif args.command == "teardown":
            teardown_stack(args.stack_name, allow_aws=args.aws, timeout_s=args.timeout)
    except (DeployError, BotoCoreError) as e:
        # BotoCoreError: no credentials, endpoint not reachable, ...: the message says which.
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
