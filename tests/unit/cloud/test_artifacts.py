"""Unit tests of what a deploy ships (cloud/artifacts.py): the Lambda zips, the template (cfn-lint, least
privilege, the condition on the SageMaker resources), the state machine definition. No network."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode_str
from conftest import use_offline_aws

from cloud import deploy
from cloud.artifacts import (
    LAMBDA_HANDLERS,
    LAMBDAS_DIR,
    ROOT,
    SHARED_LAMBDA_MODULES,
    STATE_MACHINE_PATH,
    TEMPLATE_PATH,
    Artifact,
    SourceTree,
    build_artifacts,
    build_lambda_zip,
)
from cloud.errors import SourceTreeError
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
    assert sagemaker == {"Model", "EndpointConfig", "Endpoint", "ChallengerModel"}
    autoscaling = {"EndpointScalableTarget", "EndpointScalingPolicy"}  # tests/unit/cloud/test_template_autoscaling.py
    alarms = {"ModelErrorRateAlarm", "ModelLatencyAlarm"}  # tests/unit/cloud/test_template_rollout.py
    assert conditional == (sagemaker - {"ChallengerModel"}) | autoscaling | alarms | {"ModelExecutionRole"}
    assert RESOURCES["ChallengerModel"]["Condition"] == "ChallengerWanted"
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


def test_a_copy_of_the_sources_builds_the_same_artifacts_and_an_edit_changes_only_its_own(tmp_path):
    for part in ("lambdas", "statemachine"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cloud").mkdir()
    shutil.copy2(TEMPLATE_PATH, tmp_path / "cloud" / "template.yaml")
    copy = SourceTree(tmp_path).check()
    assert {k: a.sha256 for k, a in build_artifacts(sources=copy).items()} == {
        k: a.sha256 for k, a in build_artifacts().items()
    }
    handler = copy.lambdas_dir / "filter_low_confidence.py"
    handler.write_text(handler.read_text() + "\n# edited\n")
    changed = {k for k, a in build_artifacts(sources=copy).items() if a.sha256 != build_artifacts()[k].sha256}
    assert changed == {"FilterLowConfidenceCodeKey"}


def test_a_folder_not_laid_out_as_the_repository_is_a_named_error(tmp_path):
    (tmp_path / "lambdas").mkdir()
    with pytest.raises(SourceTreeError, match=r"has no .*template\.yaml"):
        SourceTree(tmp_path).check()
