"""Unit tests of cloud/: artifacts, template, state machine definition, the deploy script's API calls
(botocore Stubber) and the AWS-only part of the template deployed to moto. No network."""

from __future__ import annotations

import datetime
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from cfnlint.api import lint_file
from cfnlint.decode import decode_str
from conftest import use_offline_aws
from moto import mock_aws
from moto_tls import PLAIN_HTTP_ONLY, moto_sees_tls  # noqa: F401 (an autouse fixture)

from cloud import deploy, workflow
from cloud.artifacts import (
    LAMBDA_HANDLERS,
    LAMBDAS_DIR,
    SHARED_LAMBDA_MODULES,
    STATE_MACHINE_PATH,
    TEMPLATE_PATH,
    Artifact,
    build_artifacts,
    build_lambda_zip,
)
from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_ENDPOINT_NAME
from cloud.errors import AwsRegionMissingError, DeployError, RealAwsRefusedError, StackFailedError
from cloud.stack import apply_change_set, stack_resource_id, stack_status
from lambdas import contract, metrics

TEMPLATE = decode_str(TEMPLATE_PATH.read_text())[0]
DEFINITION = json.loads(STATE_MACHINE_PATH.read_text())
RESOURCES = TEMPLATE["Resources"]


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    use_offline_aws(monkeypatch, "eu-west-1")


# --- Artifacts ---------------------------------------------------------------------------------


def test_lambda_zips_are_byte_for_byte_reproducible():
    first, second = build_artifacts(), build_artifacts()
    assert {k: a.data for k, a in first.items()} == {k: a.data for k, a in second.items()}
    assert set(first) == {*LAMBDA_HANDLERS, "StateMachineDefinitionKey", "BatchStateMachineDefinitionKey"}


@pytest.mark.parametrize("handler", sorted(LAMBDA_HANDLERS.values()))
def test_lambda_zip_holds_exactly_its_handler_and_the_shared_modules(handler):
    with zipfile.ZipFile(io.BytesIO(build_lambda_zip(handler))) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(f"lambdas/{m}" for m in {*SHARED_LAMBDA_MODULES, f"{handler}.py"})
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert archive.read(info) == (LAMBDAS_DIR / Path(info.filename).name).read_bytes()


def test_a_changed_source_gets_a_new_hash_and_key(tmp_path):
    sources = tmp_path / "lambdas"
    shutil.copytree(LAMBDAS_DIR, sources, ignore=shutil.ignore_patterns("__pycache__"))
    before = Artifact("filter", build_lambda_zip("filter_low_confidence", sources), ".zip")
    (sources / "contract.py").write_text((sources / "contract.py").read_text() + "\n# changed\n")
    after = Artifact("filter", build_lambda_zip("filter_low_confidence", sources), ".zip")
    assert before.sha256 != after.sha256
    assert before.key != after.key
    assert after.key == f"artifacts/filter/{after.sha256}.zip"


def test_endpoint_name_rule_is_the_templates():
    assert TEMPLATE["Parameters"]["ModelEndpointName"]["AllowedPattern"] == deploy.ENDPOINT_NAME_PATTERN.pattern


def test_artifact_bucket_name_is_valid_stable_and_distinct():
    name = deploy.artifact_bucket_name("Scones-" + "x" * 35, "123456789012", "ap-southeast-3")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name)
    assert name == deploy.artifact_bucket_name("Scones-" + "x" * 35, "123456789012", "ap-southeast-3")
    assert name != deploy.artifact_bucket_name("Scones-" + "x" * 35, "123456789012", "eu-west-1")


# --- Template ----------------------------------------------------------------------------------


def test_template_passes_cfn_lint():
    assert [str(match) for match in lint_file(TEMPLATE_PATH)] == []


def iam_statements():
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield logical_id, statement


# Actions AWS supports no resource-level permissions for, so "*" is the only possible resource.
RESOURCE_STAR_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_roles_are_least_privilege():
    for logical_id, statement in iam_statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in actions), (logical_id, actions)
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in resources:
            assert set(actions) <= RESOURCE_STAR_ACTIONS, (logical_id, actions)


def test_each_function_has_its_own_role_and_log_group_with_retention():
    functions = {k: r for k, r in RESOURCES.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == len(LAMBDA_HANDLERS)
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}
    assert len(roles) == len(functions)
    for logical_id, function in functions.items():
        log_group = RESOURCES[logical_id.replace("Function", "LogGroup")]["Properties"]
        assert (
            log_group["LogGroupName"]["Fn::Sub"] == "/aws/lambda/" + function["Properties"]["FunctionName"]["Fn::Sub"]
        )
    for resource in RESOURCES.values():
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_handlers_and_code_keys_match_the_lambdas_package():
    handlers = {r["Properties"]["Handler"] for r in RESOURCES.values() if r["Type"] == "AWS::Lambda::Function"}
    assert handlers == {f"lambdas.{m}.handler" for m in LAMBDA_HANDLERS.values()}
    code_keys = {r["Properties"]["Code"]["S3Key"]["Ref"] for r in RESOURCES.values() if "Code" in r["Properties"]}
    assert code_keys == set(LAMBDA_HANDLERS)


def test_bucket_is_encrypted_and_private():
    bucket = RESOURCES["ImageBucket"]["Properties"]
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(bucket["PublicAccessBlockConfiguration"].values())


def test_sagemaker_resources_exist_only_behind_the_condition():
    conditional = {k for k, r in RESOURCES.items() if r.get("Condition") == "ModelEndpointWanted"}
    sagemaker = {k for k, r in RESOURCES.items() if r["Type"].startswith("AWS::SageMaker::")}
    assert sagemaker == {"Model", "EndpointConfig", "Endpoint"}
    autoscaling = {"EndpointScalableTarget", "EndpointScalingPolicy"}  # tests/unit/test_autoscaling.py
    assert conditional == sagemaker | autoscaling | {"ModelExecutionRole"}
    capture = RESOURCES["EndpointConfig"]["Properties"]["DataCaptureConfig"]
    assert capture["EnableCapture"] is True


def test_the_model_server_url_reaches_the_classifier_only_when_given():
    variables = RESOURCES["ClassifyImageFunction"]["Properties"]["Environment"]["Variables"]["Fn::If"]
    assert variables[0] == "HasModelEndpointUrl"
    with_url, without_url = variables[1], variables[2]
    assert with_url["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == {"Ref": "ModelEndpointUrl"}
    assert "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME" not in without_url
    assert with_url[contract.ENV_MODEL_ENDPOINT_NAME] == without_url[contract.ENV_MODEL_ENDPOINT_NAME]
    filter_env = RESOURCES["FilterLowConfidenceFunction"]["Properties"]["Environment"]["Variables"]
    assert set(filter_env) == {contract.ENV_CONFIDENCE_THRESHOLD, metrics.NAMESPACE_VAR, metrics.STACK_VAR}
    for env in (with_url, without_url, filter_env):  # what the metrics are named and dimensioned by
        assert env[metrics.NAMESPACE_VAR] == {"Ref": "MetricsNamespace"}
        assert env[metrics.STACK_VAR] == {"Ref": "AWS::StackName"}


def test_deploy_passes_every_template_parameter_and_no_other():
    keys = {p: "key" for p in [*LAMBDA_HANDLERS, "StateMachineDefinitionKey", "BatchStateMachineDefinitionKey"]}
    passed = {p["ParameterKey"] for p in deploy.stack_parameters(deploy.DeployConfig(), "bucket", keys)}
    assert passed == set(TEMPLATE["Parameters"])


# --- State machine definition ------------------------------------------------------------------


def test_definition_placeholders_are_exactly_the_templates_substitutions():
    text = STATE_MACHINE_PATH.read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    assert text.count("${") == len(re.findall(r"\$\{\w+\}", text))  # no stray "${" for AWS to reject
    substitutions = RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert placeholders == set(substitutions)


def test_tasks_use_the_optimized_lambda_integration_with_backoff():
    tasks = {n: s for n, s in DEFINITION["States"].items() if s["Type"] == "Task"}
    assert list(tasks) == ["Serialize Image Data", "Classify Image", "Filter Low Confidence"]
    for state in tasks.values():
        assert state["Resource"] == "arn:aws:states:::lambda:invoke"
        assert state["Parameters"]["Payload.$"] == "$"
        assert state["OutputPath"] == "$.Payload"
        assert "Lambda.ServiceException" in state["Retry"][0]["ErrorEquals"]
        for retrier in state["Retry"]:
            assert retrier["BackoffRate"] > 1 and retrier["MaxAttempts"] >= 2
    assert ["EndpointUnavailableError"] in [r["ErrorEquals"] for r in tasks["Classify Image"]["Retry"]]


def test_only_low_confidence_is_caught_and_it_ends_in_a_fail_state():
    catchers = [c for s in DEFINITION["States"].values() for c in s.get("Catch", [])]
    assert [c["ErrorEquals"] for c in catchers] == [["LowConfidenceError"]]  # nothing else is swallowed
    fail = DEFINITION["States"][catchers[0]["Next"]]
    assert fail["Type"] == "Fail"
    assert fail["Error"] == "LowConfidenceError"
    assert fail["CausePath"] == catchers[0]["ResultPath"] + ".Cause"


def test_error_names_in_the_definition_are_the_contracts():
    named = {
        error
        for state in DEFINITION["States"].values()
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for error in rule["ErrorEquals"]
        if not error.startswith(("Lambda.", "States."))
    }
    assert named == {"EndpointUnavailableError", "LowConfidenceError"}
    for name in named:
        assert issubclass(getattr(contract, name), contract.WorkflowError)


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
        # and drops the Model's EnableNetworkIsolation: tests/unit/test_template_security.py checks those.
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


# --- Reading executions ------------------------------------------------------------------------


def result(error=None, cause=None, status="FAILED", output=None) -> workflow.ExecutionResult:
    return workflow.ExecutionResult("arn", status, output, error, cause, NOW, NOW + datetime.timedelta(seconds=2))


def test_error_name_as_aws_and_localstack_report_it():
    cause = json.dumps({"errorType": "LowConfidenceError", "errorMessage": "LowConfidenceError: top 0.6"})
    r = result("LowConfidenceError", cause)
    assert (r.error_name, r.error_message, r.seconds) == ("LowConfidenceError", "LowConfidenceError: top 0.6", 2.0)


def test_error_name_when_the_emulator_reports_runtime_handler_error():
    cause = json.dumps({"errorType": "Runtime.HandlerError", "errorMessage": "ImageTooLargeError: too big"})
    assert result("Runtime.HandlerError", cause).error_name == "ImageTooLargeError"
    unnamed = json.dumps({"errorType": "Runtime.HandlerError", "errorMessage": "division by zero"})
    assert result("Runtime.HandlerError", unnamed).error_name == "Runtime.HandlerError"
    assert result("States.Timeout", "not json").error_message == "not json"


def test_label_of_a_succeeded_execution():
    output = {"s3_bucket": "b", "s3_key": "k", "image_data": "AAAA", "inferences": [0.02, 0.98]}
    r = result(status="SUCCEEDED", output=output)
    assert r.label == "motorcycle"
    assert "image_data" not in r.summary()["output"]
    assert result().label is None


def test_waiting_past_the_deadline_stops_the_execution():
    sfn = boto3.client("stepfunctions")
    running = {"executionArn": "arn:x", "stateMachineArn": "arn:sm", "status": "RUNNING", "startDate": NOW}
    with Stubber(sfn) as stub:
        stub.add_response("describe_execution", running)
        stub.add_response("stop_execution", {"stopDate": NOW}, {"executionArn": "arn:x", "error": ANY, "cause": ANY})
        with pytest.raises(workflow.ExecutionTimeoutError, match="stopped it"):
            workflow.wait_for_execution(sfn, "arn:x", timeout_s=0.05, poll_s=0.1)
        stub.assert_no_pending_responses()


def test_waiting_returns_the_terminal_state():
    sfn = boto3.client("stepfunctions")
    running = {"executionArn": "arn:x", "stateMachineArn": "arn:sm", "status": "RUNNING", "startDate": NOW}
    done = {**running, "status": "SUCCEEDED", "stopDate": NOW, "output": '{"inferences": [0.99, 0.01]}'}
    with Stubber(sfn) as stub:
        stub.add_response("describe_execution", running)
        stub.add_response("describe_execution", done)
        assert workflow.wait_for_execution(sfn, "arn:x", timeout_s=10, poll_s=0.01).label == "bicycle"
