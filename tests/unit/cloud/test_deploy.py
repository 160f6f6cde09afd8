"""Unit tests of deploy and teardown (cloud/deploy.py, cloud/stack.py, cloud/aws.py): the target's checks, the
change-set flow's API calls (botocore Stubber), and the whole template, SageMaker included, on moto. No network."""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber
from cfnlint.decode import decode_str
from conftest import use_offline_aws
from moto import mock_aws

from cloud import deploy
from cloud.artifacts import (
    TEMPLATE_PATH,
)
from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_ENDPOINT_NAME
from cloud.errors import AwsRegionMissingError, DeployError, RealAwsRefusedError, StackFailedError
from cloud.stack import apply_change_set, stack_resource_id, stack_status
from tests.helpers.moto_tls import PLAIN_HTTP_ONLY, moto_sees_tls  # noqa: F401 (an autouse fixture)

TEMPLATE = decode_str(TEMPLATE_PATH.read_text())[0]


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    use_offline_aws(monkeypatch, "eu-west-1")


# --- Target checks -----------------------------------------------------------------------------


def test_deploy_refuses_real_aws_before_any_call():
    with mock_aws():
        with pytest.raises(RealAwsRefusedError, match="refusing to touch real AWS"):
            deploy.deploy_stack(deploy.DeployConfig(stack_name="refused"), AwsTarget())
        with pytest.raises(RealAwsRefusedError):
            deploy.teardown_stack(AwsTarget(), "refused")
        assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_an_emulator_endpoint_is_not_real_aws(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    target = AwsTarget().check(*deploy.STACK_SERVICES)
    assert [target.client(s).meta.endpoint_url for s in deploy.STACK_SERVICES] == ["http://127.0.0.1:4566"] * 3
    assert not target.is_real_aws


def test_a_single_service_pointing_at_aws_is_refused(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "https://sts.eu-west-1.amazonaws.com")
    with pytest.raises(RealAwsRefusedError, match="sts"):
        AwsTarget().check(*deploy.STACK_SERVICES)


def test_deploy_needs_a_region(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(AwsRegionMissingError, match="AWS_DEFAULT_REGION"):
        AwsTarget().client("s3")


def test_a_target_makes_each_client_once_with_one_retry_configuration(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    target = AwsTarget()
    assert target.client("s3") is target.client("s3")
    assert target.client("s3", endpoint_url="http://127.0.0.1:8080") is not target.client("s3")
    retries = [target.client(s).meta.config.retries for s in ("s3", "stepfunctions", "ecr")]
    # cloud/aws.py's CLIENT_CONFIG: standard mode, 5 retries after the first attempt.
    assert retries == [{"mode": "standard", "total_max_attempts": 6}] * 3
    # A copy reporting elsewhere shares the clients.
    assert target.reporting_to(print).client("s3") is target.client("s3")


def test_a_deployment_and_its_teardown_ask_sts_for_the_identity_once(tmp_path):
    config = sagemaker_deploy_config(tmp_path, "scones-sts")
    with mock_aws():
        session, identity_calls = boto3.Session(), []
        session.events.register("before-call.sts.GetCallerIdentity", lambda **_: identity_calls.append(1))
        target = AwsTarget(session, allow_aws=True, timeout_s=60, progress=lambda _: None)
        deploy.deploy_stack(config, target)
        deploy.teardown_stack(target, "scones-sts")
    assert len(identity_calls) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (deploy.DeployConfig(stack_name="1-starts-with-digit"), "must start with a letter"),
        (deploy.DeployConfig(stack_name="s" * 43), "at most 42"),
        (deploy.DeployConfig(confidence_threshold=1.5), "outside"),
        (deploy.DeployConfig(model_endpoint_name="Scones_Endpoint"), "lower-case"),
        (deploy.DeployConfig(create_model_endpoint=True), "model_image_repository, model_image_tag, model_data_path"),
    ],
)
def test_bad_configurations_are_refused_with_the_reason(config, message):
    with pytest.raises(DeployError, match=message):
        config.check()


# --- API calls of the change-set flow (Stubber) ------------------------------------------------

PARAMETERS = [{"ParameterKey": "ModelEndpointName", "ParameterValue": "e"}]
STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1"
CHANGE_SET_ID = "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/c/1"
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def stack(status: str) -> dict:
    return {"Stacks": [{"StackName": "s", "StackId": STACK_ID, "StackStatus": status, "CreationTime": NOW}]}


def missing_stack(stub: Stubber) -> None:
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id s does not exist", 400)


def change_set(stub: Stubber, change_set_type: str, status: str = "CREATE_COMPLETE", reason: str = "") -> None:
    stub.add_response(
        "create_change_set",
        {"Id": CHANGE_SET_ID, "StackId": STACK_ID},
        {
            "StackName": "s",
            "ChangeSetName": ANY,
            "ChangeSetType": change_set_type,
            "TemplateBody": "template",
            "Parameters": PARAMETERS,
            "Capabilities": ["CAPABILITY_IAM"],
            "Tags": ANY,
        },
    )
    described = {"ChangeSetId": CHANGE_SET_ID, "StackName": "s", "Status": status, "Changes": []}
    if reason:
        described["StatusReason"] = reason
    stub.add_response("describe_change_set", described, {"ChangeSetName": CHANGE_SET_ID, "StackName": "s"})


@pytest.fixture
def cfn():
    target = AwsTarget(allow_aws=True)  # the Stubber answers: nothing is sent
    with Stubber(target.client("cloudformation")) as stub:
        yield target, stub
        stub.assert_no_pending_responses()


def apply(target: AwsTarget) -> list[str]:
    said = []
    apply_change_set(target.reporting_to(said.append), "s", "template", PARAMETERS, deadline=float("inf"))
    return said


def test_a_new_stack_is_created_through_a_change_set(cfn):
    client, stub = cfn
    missing_stack(stub)
    change_set(stub, "CREATE")
    stub.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET_ID, "StackName": "s"})
    stub.add_response("describe_stacks", stack("CREATE_IN_PROGRESS"))
    stub.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    assert apply(client)[-1] == "s: CREATE_COMPLETE"


def test_an_existing_stack_is_updated_and_no_changes_is_no_op(cfn):
    client, stub = cfn
    stub.add_response("describe_stacks", stack("UPDATE_COMPLETE"))
    change_set(stub, "UPDATE", "FAILED", "The submitted information didn't contain changes.")
    stub.add_response("delete_change_set", {}, {"ChangeSetName": CHANGE_SET_ID, "StackName": "s"})
    assert apply(client) == ["s is up to date"]


def test_a_stack_whose_creation_failed_is_replaced(cfn):
    client, stub = cfn
    stub.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))
    stub.add_response("delete_stack", {}, {"StackName": "s"})
    missing_stack(stub)  # deleted: the change set creates it again
    change_set(stub, "CREATE")
    stub.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET_ID, "StackName": "s"})
    stub.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    apply(client)


def test_a_busy_stack_is_left_alone(cfn):
    client, stub = cfn
    stub.add_response("describe_stacks", stack("UPDATE_IN_PROGRESS"))
    with pytest.raises(DeployError, match="busy"):
        apply(client)


def test_a_failed_deployment_reports_the_resources_reasons(cfn):
    client, stub = cfn
    stub.add_response("describe_stacks", stack("UPDATE_COMPLETE"))
    change_set(stub, "UPDATE")
    stub.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET_ID, "StackName": "s"})
    stub.add_response("describe_stacks", stack("UPDATE_ROLLBACK_COMPLETE"))
    event = {"StackId": STACK_ID, "EventId": "1", "StackName": "s", "Timestamp": NOW}
    stub.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                {**event, "LogicalResourceId": "ClassifyImageFunction", "ResourceStatus": "UPDATE_COMPLETE"},
                {
                    **event,
                    "LogicalResourceId": "ClassifyImageFunction",
                    "ResourceStatus": "UPDATE_FAILED",
                    "ResourceStatusReason": "S3 key does not exist",
                },
            ]
        },
    )
    with pytest.raises(StackFailedError, match="ClassifyImageFunction: S3 key does not exist"):
        apply(client)


# --- The whole template, SageMaker included, on moto -------------------------------------------


def sagemaker_deploy_config(tmp_path, stack_name: str, **options) -> deploy.DeployConfig:
    """A deploy with the SageMaker endpoint on, from a stand-in model.tar.gz."""
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"model bytes")
    return deploy.DeployConfig(
        stack_name=stack_name,
        create_model_endpoint=True,
        model_image_repository="scones-model",
        model_image_tag="v1",
        model_data_path=model,
        **options,
    )


def moto_target(session: boto3.Session | None = None) -> AwsTarget:
    """moto stands in for real AWS: the endpoints are AWS's, so the target must allow it."""
    return AwsTarget(session or boto3.Session(), allow_aws=True, timeout_s=60, progress=lambda _: None)


def test_full_stack_with_the_sagemaker_endpoint_deploys_and_tears_down_on_moto(tmp_path):
    config = sagemaker_deploy_config(tmp_path, "scones-moto", data_capture_sampling_percentage=20)
    with mock_aws():
        deploy.deploy_stack(config, moto_target())
        cfn, sagemaker, s3 = (boto3.client(name) for name in ("cloudformation", "sagemaker", "s3"))
        assert cfn.describe_stacks(StackName="scones-moto")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        # moto names the endpoint after the stack (it ignores EndpointName) and keeps no outputs after
        # a change set: look the resources up instead.
        (endpoint,) = sagemaker.list_endpoints()["Endpoints"]
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint["EndpointName"])
        endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        capture = endpoint_config["DataCaptureConfig"]
        bucket = stack_resource_id(cfn, "scones-moto", "ImageBucket")
        assert capture["EnableCapture"] and capture["InitialSamplingPercentage"] == 20
        assert capture["DestinationS3Uri"] == f"s3://{bucket}/data-capture"
        (variant,) = endpoint_config["ProductionVariants"]
        container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        assert container["Image"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/scones-model:v1"
        artifacts = deploy.artifact_bucket_name("scones-moto", "123456789012", "eu-west-1")
        model_key = container["ModelDataUrl"].removeprefix(f"s3://{artifacts}/")
        assert s3.get_object(Bucket=artifacts, Key=model_key)["Body"].read() == b"model bytes"
        lambdas = boto3.client("lambda")
        classify = lambdas.get_function_configuration(FunctionName="scones-moto-classify-image")
        assert classify["Environment"]["Variables"] == {  # on AWS: no model server URL, SageMaker's own endpoint
            "MODEL_ENDPOINT_NAME": DEFAULT_ENDPOINT_NAME,
            "METRICS_NAMESPACE": config.metrics_namespace,
            "STACK_NAME": "scones-moto",
        }
        concurrency = lambdas.get_function_concurrency(FunctionName="scones-moto-classify-image")
        assert concurrency["ReservedConcurrentExecutions"] == config.classifier_reserved_concurrency == 32
        # The artifact bucket's policy (deploy sets it). moto's CloudFormation has no AWS::S3::BucketPolicy
        # and drops the Model's EnableNetworkIsolation: tests/unit/cloud/test_template_security.py checks those.
        (statement,) = json.loads(s3.get_bucket_policy(Bucket=artifacts)["Policy"])["Statement"]
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
        assert statement["Condition"] == PLAIN_HTTP_ONLY
        assert sorted(statement["Resource"]) == [f"arn:aws:s3:::{artifacts}", f"arn:aws:s3:::{artifacts}/*"]

        s3.put_object(Bucket=bucket, Key="data-capture/x.jsonl", Body=b"{}")
        deploy.teardown_stack(moto_target(), "scones-moto")
        assert stack_status(cfn, "scones-moto") is None
        assert sagemaker.list_endpoints()["Endpoints"] == []
        assert s3.list_buckets()["Buckets"] == []
        deploy.teardown_stack(moto_target(), "scones-moto")  # twice is fine


def test_teardown_deletes_the_capture_writing_endpoint_before_emptying_the_buckets(tmp_path):
    config = sagemaker_deploy_config(tmp_path, "scones-order")
    with mock_aws():
        deploy.deploy_stack(config, moto_target())
        cfn, sagemaker, s3 = (boto3.client(name) for name in ("cloudformation", "sagemaker", "s3"))
        image_bucket = stack_resource_id(cfn, "scones-order", "ImageBucket")
        s3.put_object(Bucket=image_bucket, Key="data-capture/AllTraffic/2026/01/01/00/x.jsonl", Body=b"{}")
        assert sagemaker.list_endpoints()["Endpoints"]

        session, calls = boto3.Session(), []
        record = lambda model, params, **_: calls.append((model.name, params))  # noqa: E731
        session.events.register("before-parameter-build.cloudformation", record)
        session.events.register("before-parameter-build.s3.DeleteObjects", record)
        deploy.teardown_stack(moto_target(session), "scones-order")

        names = [name for name, _ in calls]
        # First the stack without its endpoint (CloudFormation deletes the resources whose condition
        # turned false; moto 5.2.5 does not, which is why the endpoint count is not checked here), then
        # the buckets emptied, then the stack deleted.
        assert names.index("UpdateStack") < names.index("DeleteObjects") < names.index("DeleteStack")
        (update,) = [params for name, params in calls if name == "UpdateStack"]
        assert update["UsePreviousTemplate"] is True
        changed = [p for p in update["Parameters"] if not p.get("UsePreviousValue")]
        assert changed == [{"ParameterKey": "CreateModelEndpoint", "ParameterValue": "false"}]
        assert {p["ParameterKey"] for p in update["Parameters"]} == set(TEMPLATE["Parameters"])
        emptied = {params["Bucket"] for name, params in calls if name == "DeleteObjects"}
        assert emptied == {image_bucket, deploy.artifact_bucket_name("scones-order", "123456789012", "eu-west-1")}
        assert sagemaker.list_endpoints()["Endpoints"] == []
        assert stack_status(cfn, "scones-order") is None
        assert s3.list_buckets()["Buckets"] == []


def test_the_endpoint_name_rule_is_one_rule_for_deploy_and_the_server() -> None:
    from local_model import serve, settings

    assert deploy.ENDPOINT_NAME_PATTERN is serve.ENDPOINT_NAME_PATTERN is settings.ENDPOINT_NAME_PATTERN
    assert deploy.ENDPOINT_NAME_PATTERN.match("scones-image-classifier")
    assert not deploy.ENDPOINT_NAME_PATTERN.match("Scones-Image-Classifier")  # SageMaker lower-cases ARNs
