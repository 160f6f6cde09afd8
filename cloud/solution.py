"""The resources of a solution run by `scones solution run` (scones/solution/): its Lambda functions and its state
machine, created in the emulator (or updated when they exist: running a solution again after an edit), with
the two roles they name. Names derive from the solution's name; ARNs come from the emulator's answers, never
written here.

Every function gets AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME pointing at the model server's any-endpoint path
(local_model/settings.py ANY_ENDPOINT_PATH), so a solution reaches the model with no setting of its own and with
the endpoint name it hard-codes (the server logs it). The project's own stack keeps the strict path."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from cloud.aws import AwsTarget
from local_model.settings import ANY_ENDPOINT_PATH

SOLUTION_MACHINE_PREFIX = "solution-"  # state machines named so are a solution's (the console lists them)
SOLUTION_RUNTIME = "python3.11"  # the template's Runtime: the Python the project runs everywhere
SOLUTION_TIMEOUT_S = 60  # per function: the classifier's in the template
SOLUTION_MEMORY_MB = 512
SAGEMAKER_RUNTIME_ENDPOINT_VAR = "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"
LAMBDA_ROLE = "scones-solution-lambda"
STATES_ROLE = "scones-solution-states"
MAX_FUNCTION_NAME = 64


@dataclass(frozen=True)
class SolutionFunction:
    name: str  # the definition's function name
    handler: str  # module.function
    source_key: str  # which zip (one per source given)


@dataclass(frozen=True)
class CreatedSolution:
    state_machine_arn: str
    function_arns: dict[str, str]  # by the definition's function name
    function_names: dict[str, str]  # by the definition's function name: the names created here


def solution_function_name(solution: str, function: str) -> str:
    return f"{solution}-{function}"[:MAX_FUNCTION_NAME]


def ensure_role(aws: AwsTarget, name: str, service: str) -> str:
    """The role `name` that `service` (lambda.amazonaws.com, states.amazonaws.com) may assume; made if missing."""
    iam = aws.client("iam")
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("NoSuchEntity", "NoSuchEntityException"):
            raise
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def put_function(
    aws: AwsTarget, name: str, handler: str, code: bytes, role_arn: str, environment: dict[str, str]
) -> str:
    """Create the function, or update its code and configuration when it exists; its ARN once it can run."""
    lam = aws.client("lambda")
    settings = {
        "Runtime": SOLUTION_RUNTIME,
        "Role": role_arn,
        "Handler": handler,
        "Timeout": SOLUTION_TIMEOUT_S,
        "MemorySize": SOLUTION_MEMORY_MB,
        "Environment": {"Variables": environment},
    }
    try:
        arn = lam.create_function(FunctionName=name, Code={"ZipFile": code}, **settings)["FunctionArn"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceConflictException":
            raise
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        lam.update_function_code(FunctionName=name, ZipFile=code)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        arn = lam.update_function_configuration(FunctionName=name, **settings)["FunctionArn"]
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return arn.split(":$LATEST")[0]


def put_state_machine(aws: AwsTarget, name: str, definition: dict, role_arn: str) -> str:
    sfn = aws.client("stepfunctions")
    body = json.dumps(definition)
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=body, roleArn=role_arn)
                return machine["stateMachineArn"]
    return sfn.create_state_machine(name=name, definition=body, roleArn=role_arn)["stateMachineArn"]


def create_solution(
    aws: AwsTarget,
    solution: str,
    functions: list[SolutionFunction],
    zips: dict[str, bytes],
    definition_with: Callable[[dict[str, str]], dict],
    model_url: str,
    environment: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> CreatedSolution:
    """Create (or update) the functions, then the state machine `definition_with(function ARNs)` defines."""
    lambda_role = ensure_role(aws, LAMBDA_ROLE, "lambda.amazonaws.com")
    states_role = ensure_role(aws, STATES_ROLE, "states.amazonaws.com")
    variables = {**(environment or {}), SAGEMAKER_RUNTIME_ENDPOINT_VAR: model_url.rstrip("/") + ANY_ENDPOINT_PATH}
    arns, names = {}, {}
    for function in functions:
        names[function.name] = solution_function_name(solution, function.name)
        arns[function.name] = put_function(
            aws, names[function.name], function.handler, zips[function.source_key], lambda_role, variables
        )
        progress(f"function {names[function.name]} ({function.handler}) ready")
    machine = put_state_machine(aws, SOLUTION_MACHINE_PREFIX + solution, definition_with(arns), states_role)
    progress(f"state machine {machine.rsplit(':', 1)[-1]} ready")
    return CreatedSolution(machine, arns, names)
