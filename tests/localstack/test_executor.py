"""Checks the subprocess Lambda executor inside a real LocalStack at AWS_ENDPOINT_URL.

Direct invokes, a Step Functions task through `arn:aws:states:::lambda:invoke` and a function that
CloudFormation creates, each with the errors AWS would report.
Run: `python tests/localstack/run.py -- pytest tests/localstack`.
"""

import base64
import io
import json
import os
import time
import urllib.request
import uuid
import zipfile

import boto3
import pytest
from botocore.config import Config

HANDLER_SOURCE = """
import json
import os
import time

import boto3


class ConfidenceTooLowError(Exception):
    pass


def handle(event, context):
    print("handling", json.dumps(event))
    if event.get("fail"):
        raise ConfidenceTooLowError(f"scores {event['fail']}")
    time.sleep(event.get("sleep_s", 0))
    return {
        "event": event,
        "greeting": os.environ["GREETING"],
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
        "account": boto3.client("sts").get_caller_identity()["Account"],
        "request_id": context.aws_request_id,
    }
"""
EXECUTION_DEADLINE_S = 60


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def endpoint() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        pytest.fail("AWS_ENDPOINT_URL is not set: run `python tests/localstack/run.py -- pytest tests/localstack`")
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=5) as response:
            health = json.load(response)
    except (OSError, ValueError) as e:
        pytest.fail(f"no LocalStack answers at AWS_ENDPOINT_URL={url}: {e}")
    assert health["services"].get("lambda"), f"LocalStack at {url} has no Lambda service: {health}"
    return url


@pytest.fixture(scope="session")
def aws(endpoint):
    config = Config(retries={"max_attempts": 3, "mode": "standard"})
    return {
        name: boto3.client(name, config=config) for name in ("lambda", "iam", "s3", "stepfunctions", "cloudformation")
    }


@pytest.fixture(scope="session")
def role_arn(aws):
    name = unique("executor-test-role")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    arn = aws["iam"].create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    yield arn
    aws["iam"].delete_role(RoleName=name)


@pytest.fixture
def make_function(aws, role_arn):
    """Creates functions from in-memory sources and deletes them after the test."""
    created = []

    def make(files: dict[str, str], handler: str = "app.handle", timeout_s: int = 10) -> str:
        name = unique("executor-test")
        aws["lambda"].create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role_arn,
            Handler=handler,
            Code={"ZipFile": zipped(files)},
            Timeout=timeout_s,
            Environment={"Variables": {"GREETING": "hello from the function's Environment"}},
        )
        created.append(name)
        aws["lambda"].get_waiter("function_active_v2").wait(FunctionName=name)
        return aws["lambda"].get_function(FunctionName=name)["Configuration"]["FunctionArn"]

    yield make
    for name in created:
        aws["lambda"].delete_function(FunctionName=name)


def invoke(aws, function: str, event: dict) -> tuple[dict, dict]:
    response = aws["lambda"].invoke(FunctionName=function, Payload=json.dumps(event).encode(), LogType="Tail")
    return response, json.loads(response["Payload"].read())


def test_invoke_returns_result_with_environment_and_endpoint(aws, endpoint, make_function):
    function = make_function({"app.py": HANDLER_SOURCE})

    response, result = invoke(aws, function, {"n": 1})

    assert "FunctionError" not in response, result
    assert result["event"] == {"n": 1}
    assert result["greeting"] == "hello from the function's Environment"
    assert result["endpoint"] == endpoint
    assert result["account"].isdigit()
    assert result["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert "handling" in base64.b64decode(response["LogResult"]).decode()


def test_handler_exception_is_reported_by_class_name(aws, make_function):
    function = make_function({"app.py": HANDLER_SOURCE})

    response, error = invoke(aws, function, {"fail": [0.5, 0.5]})

    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ConfidenceTooLowError"
    assert error["errorMessage"] == "scores [0.5, 0.5]"
    assert any("app.py" in frame for frame in error["stackTrace"])
    assert "ConfidenceTooLowError" in base64.b64decode(response["LogResult"]).decode()


def test_import_failure_is_reported_as_aws_does(aws, make_function):
    function = make_function({"app.py": "import not_a_module_here\n"})

    response, error = invoke(aws, function, {})

    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "not_a_module_here" in error["errorMessage"]


def test_timeout_is_reported_and_environment_recovers(aws, make_function):
    function = make_function({"app.py": HANDLER_SOURCE}, timeout_s=1)

    response, error = invoke(aws, function, {"sleep_s": 3})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Sandbox.Timedout"

    response, result = invoke(aws, function, {"n": 2})
    assert "FunctionError" not in response, result
    assert result["event"] == {"n": 2}


def one_task_definition(function_arn: str) -> str:
    return json.dumps(
        {
            "StartAt": "Call Function",
            "States": {
                "Call Function": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                    "OutputPath": "$.Payload",
                    "End": True,
                }
            },
        }
    )


@pytest.fixture
def state_machine(aws, role_arn, make_function):
    function = make_function({"app.py": HANDLER_SOURCE})
    arn = aws["stepfunctions"].create_state_machine(
        name=unique("executor-test"), definition=one_task_definition(function), roleArn=role_arn
    )["stateMachineArn"]
    yield arn
    aws["stepfunctions"].delete_state_machine(stateMachineArn=arn)


def run_execution(aws, state_machine_arn: str, event: dict) -> dict:
    execution_arn = aws["stepfunctions"].start_execution(
        stateMachineArn=state_machine_arn, name=unique("run"), input=json.dumps(event)
    )["executionArn"]
    deadline = time.monotonic() + EXECUTION_DEADLINE_S
    while time.monotonic() < deadline:
        execution = aws["stepfunctions"].describe_execution(executionArn=execution_arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.2)
    aws["stepfunctions"].stop_execution(executionArn=execution_arn)
    pytest.fail(f"execution {execution_arn} still RUNNING after {EXECUTION_DEADLINE_S} s")


def test_state_machine_task_succeeds(aws, state_machine):
    execution = run_execution(aws, state_machine, {"n": 3})

    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"])["event"] == {"n": 3}


def test_state_machine_task_failure_carries_error_type(aws, state_machine):
    execution = run_execution(aws, state_machine, {"fail": [0.6, 0.4]})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "ConfidenceTooLowError"
    assert json.loads(execution["cause"])["errorMessage"] == "scores [0.6, 0.4]"


def test_sync_execution_needs_no_host_prefix(aws, role_arn, make_function):
    # LocalStack has no sync-states.<host> name; AWS does, so the prefix stays on for AWS.
    function = make_function({"app.py": HANDLER_SOURCE})
    sfn = boto3.client("stepfunctions", config=Config(inject_host_prefix=False))
    arn = sfn.create_state_machine(
        name=unique("executor-test-express"),
        definition=one_task_definition(function),
        roleArn=role_arn,
        type="EXPRESS",
    )["stateMachineArn"]
    try:
        execution = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"n": 4}))
    finally:
        sfn.delete_state_machine(stateMachineArn=arn)

    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"])["event"] == {"n": 4}


STACK_TEMPLATE = {
    "Parameters": {"CodeBucket": {"Type": "String"}, "CodeKey": {"Type": "String"}},
    "Resources": {
        "FunctionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "GreetingFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.11",
                "Handler": "app.handle",
                "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Environment": {"Variables": {"GREETING": "hello from CloudFormation"}},
            },
        },
    },
    "Outputs": {"FunctionArn": {"Value": {"Fn::GetAtt": ["GreetingFunction", "Arn"]}}},
}


def test_function_created_by_cloudformation(aws):
    bucket, stack = unique("executor-test-code"), unique("executor-test")
    aws["s3"].create_bucket(Bucket=bucket)
    aws["s3"].put_object(Bucket=bucket, Key="app.zip", Body=zipped({"app.py": HANDLER_SOURCE}))
    try:
        aws["cloudformation"].create_stack(
            StackName=stack,
            TemplateBody=json.dumps(STACK_TEMPLATE),
            Parameters=[
                {"ParameterKey": "CodeBucket", "ParameterValue": bucket},
                {"ParameterKey": "CodeKey", "ParameterValue": "app.zip"},
            ],
            Capabilities=["CAPABILITY_IAM"],
        )
        aws["cloudformation"].get_waiter("stack_create_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        outputs = aws["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
        function = next(output["OutputValue"] for output in outputs if output["OutputKey"] == "FunctionArn")

        response, result = invoke(aws, function, {"n": 5})

        assert "FunctionError" not in response, result
        assert result["greeting"] == "hello from CloudFormation"
    finally:
        aws["cloudformation"].delete_stack(StackName=stack)
        aws["cloudformation"].get_waiter("stack_delete_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        aws["s3"].delete_object(Bucket=bucket, Key="app.zip")
        aws["s3"].delete_bucket(Bucket=bucket)
