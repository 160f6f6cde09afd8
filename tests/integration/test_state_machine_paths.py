"""The state machine's paths, state by state, through the Step Functions TestState API with mocked
Lambda results and errors: the Catch of LowConfidenceError into the `Low Confidence` Fail state and
the Retry rules, which the end-to-end runs cannot reach on ministack (it reports every handler error
as Runtime.HandlerError; cloud/EMULATORS.md). The definition is the real ASL with the template's
substitutions filled in. Each call takes milliseconds: no model server, no stack."""

from __future__ import annotations

import datetime
import json
import re
import uuid

import boto3
import pytest
from botocore.config import Config
from cfnlint.decode import decode_str

from cloud import artifacts as deploy_artifacts
from lambdas import contract
from lambdas.filter_low_confidence import check_confidence
from scones.local.emulator import is_ministack
from scones.workflow.execution import ExecutionResult

pytestmark = pytest.mark.integration

EVENTS = deploy_artifacts.ROOT / "tests" / "events"
THRESHOLD = contract.DEFAULT_CONFIDENCE_THRESHOLD

# The states in the order the workflow runs them, and the designed Retry rules (the ASL is the
# implementation; these numbers are the design the tests hold it to).
SERIALIZE, CLASSIFY, FILTER, LOW_CONFIDENCE = (
    "Serialize Image Data",
    "Classify Image",
    "Filter Low Confidence",
    "Low Confidence",
)
TASKS = (SERIALIZE, CLASSIFY, FILTER)
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
LAMBDA_SERVICE_BACKOFF_S = (1, 2, 4)  # IntervalSeconds 1, BackoffRate 2, MaxAttempts 3
ENDPOINT_UNAVAILABLE_BACKOFF_S = (2, 4, 8)  # IntervalSeconds 2, BackoffRate 2, MaxAttempts 3
# Errors no rule matches: the workflow's own errors (bad input, a missing image, a broken endpoint
# answer: retrying cannot help; LowConfidenceError before the filter), and the names emulators or
# the Lambda service give a failure that lost its name. None may be retried or swallowed by a Catch.
NEVER_RETRIED = (
    *sorted(cls.__name__ for cls in contract.WorkflowError.__subclasses__()),
    "Runtime.HandlerError",
    "Lambda.Unknown",
    "States.TaskFailed",
    "States.Timeout",
)
# The only (state, error) pairs with a rule other than the Lambda service retries.
HANDLED = {(CLASSIFY, "EndpointUnavailableError"), (FILTER, "LowConfidenceError")}


def load_event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def lambda_error(error: Exception) -> dict:
    """A Lambda function's failure as the lambda:invoke integration reports it on AWS: the
    exception's class name as the error, the function's error payload as the cause."""
    cause = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []}
    return {"error": type(error).__name__, "cause": json.dumps(cause)}


@pytest.fixture(scope="module")
def sfn(aws_endpoint):
    # botocore sends TestState to the `sync-` host (sync-states.<region>.amazonaws.com on AWS); an
    # emulator is one host, so the prefix must not be added (LocalStack's own tests do the same).
    return boto3.client("stepfunctions", config=Config(inject_host_prefix=False))


@pytest.fixture(scope="module")
def role_arn(aws_endpoint):
    """A real role in the emulator for TestState to assume (AWS requires one unless every call is mocked)."""
    iam = boto3.client("iam")
    name = f"scones-test-state-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    yield arn
    iam.delete_role(RoleName=name)


@pytest.fixture(scope="module")
def function_arns(aws_endpoint) -> dict[str, str]:
    """A function ARN for each of the template's DefinitionSubstitutions, in this emulator's account and
    region (mocked calls never invoke them)."""
    template = decode_str(deploy_artifacts.TEMPLATE_PATH.read_text())[0]
    names = template["Resources"]["StateMachine"]["Properties"]["DefinitionSubstitutions"]
    account = boto3.client("sts").get_caller_identity()["Account"]
    region = boto3.Session().region_name
    return {name: f"arn:aws:lambda:{region}:{account}:function:scones-test-state-{i}" for i, name in enumerate(names)}


@pytest.fixture(scope="module")
def definition(function_arns) -> str:
    """The ASL that deploy uploads, with every ${...} replaced as CloudFormation's
    DefinitionSubstitutions replaces it."""
    text = deploy_artifacts.STATE_MACHINE_PATH.read_text()
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: function_arns[m.group(1)], text)
    assert "${" not in rendered
    return rendered


@pytest.fixture(scope="module")
def state_arns(definition) -> dict[str, str]:
    return {
        name: state["Parameters"]["FunctionName"]
        for name, state in json.loads(definition)["States"].items()
        if state["Type"] == "Task"
    }


@pytest.fixture
def run_state(sfn, definition, role_arn):
    """TestState on one state of the whole definition, with DEBUG inspection data."""

    def run(state: str, event: dict, *, result: dict | None = None, error: dict | None = None, retry_count: int = 0):
        options = {}
        if result is not None:
            # The lambda:invoke integration hands the state the function's JSON payload. The Lambda
            # Invoke API models Payload as bytes, which STRICT validation (LocalStack's) rejects.
            invoke_result = {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200}
            options["mock"] = {"result": json.dumps(invoke_result), "fieldValidationMode": "NONE"}
        elif error is not None:
            options["mock"] = {"errorOutput": error}
        if state in TASKS:
            # The retries already made (AWS's default is 0). LocalStack 2026.3.0 fails any state with
            # a Retry as States.Runtime (AttributeError) when stateConfiguration is absent.
            options["stateConfiguration"] = {"retrierRetryCount": retry_count}
        response = sfn.test_state(
            definition=definition,
            roleArn=role_arn,
            stateName=state,
            input=json.dumps(event),
            inspectionLevel="DEBUG",
            **options,
        )
        response.pop("ResponseMetadata", None)
        return response

    return run


@pytest.fixture
def ministack_lacks(request, aws_endpoint):
    """Mark the test as an expected failure on ministack, for a TestState feature it does not have
    (cloud/EMULATORS.md); strict, so the mark goes when ministack gains the feature."""

    def mark(reason: str) -> None:
        if is_ministack(aws_endpoint):
            request.applymarker(pytest.mark.xfail(reason=f"ministack 1.5.33: {reason}", strict=True))

    return mark


# --- The path of a routed image ------------------------------------------------------------------


def test_each_task_passes_its_functions_payload_to_the_next_state(run_state, state_arns):
    payloads = {
        SERIALIZE: load_event("classify_image"),  # the image added
        CLASSIFY: load_event("filter_low_confidence"),  # the scores added
        FILTER: load_event("filter_low_confidence"),  # confident: passed on unchanged
    }
    event, state, visited = load_event("serialize_image_data"), SERIALIZE, []
    while state:
        visited.append(state)
        response = run_state(state, event, result=payloads[state])
        assert response["status"] == "SUCCEEDED", response
        # Parameters: the substituted function and the whole event; OutputPath: the payload alone,
        # without the invocation's StatusCode and ExecutedVersion.
        assert json.loads(response["inspectionData"]["afterParameters"]) == {
            "FunctionName": state_arns[state],
            "Payload": event,
        }
        event = json.loads(response["output"])
        assert event == payloads[state]
        state = response.get("nextState")
    assert visited == [SERIALIZE, CLASSIFY, FILTER]  # and the filter ends the workflow


# --- Low confidence: the Catch into the Fail state -----------------------------------------------


def test_low_confidence_is_caught_into_the_fail_state_with_the_filters_message(run_state):
    event = load_event("low_confidence")
    with pytest.raises(contract.LowConfidenceError) as raised:
        check_confidence(event["inferences"], THRESHOLD)  # the filter's own verdict on this event
    error = lambda_error(raised.value)

    caught = run_state(FILTER, event, error=error)
    assert caught["status"] == "CAUGHT_ERROR", caught
    assert caught["nextState"] == LOW_CONFIDENCE
    assert (caught["error"], caught["cause"]) == (error["error"], error["cause"])
    # ResultPath $.error: the event is kept, the error added beside it.
    assert json.loads(caught["output"]) == {**event, "error": {"Error": "LowConfidenceError", "Cause": error["cause"]}}

    failed = run_state(LOW_CONFIDENCE, json.loads(caught["output"]))
    assert failed["status"] == "FAILED", failed
    assert failed["error"] == "LowConfidenceError"
    assert failed["cause"] == error["cause"]
    assert "nextState" not in failed
    # What `scones classify` and the report read from such an execution.
    now = datetime.datetime.now(datetime.UTC)
    result = ExecutionResult("arn", "FAILED", None, failed["error"], failed["cause"], now, now)
    assert result.error_name == "LowConfidenceError"
    expected = f"top score 0.6125 is below the threshold {THRESHOLD} (bicycle 0.6125, motorcycle 0.3875)"
    assert result.error_message == f"LowConfidenceError: {expected}"


# --- Retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("retries_made", range(len(ENDPOINT_UNAVAILABLE_BACKOFF_S) + 1))
def test_the_classifier_retries_an_unavailable_endpoint_with_backoff_then_fails_with_its_name(run_state, retries_made):
    error = lambda_error(contract.EndpointUnavailableError("could not connect to the endpoint URL"))
    response = run_state(CLASSIFY, load_event("classify_image"), error=error, retry_count=retries_made)
    assert (response["error"], response["cause"]) == (error["error"], error["cause"])
    if retries_made < len(ENDPOINT_UNAVAILABLE_BACKOFF_S):
        assert response["status"] == "RETRIABLE", response
        # Both emulators report the backoff without JitterStrategy FULL (AWS draws it from 0 to this).
        backoff = response["inspectionData"]["errorDetails"]["retryBackoffIntervalSeconds"]
        assert backoff == ENDPOINT_UNAVAILABLE_BACKOFF_S[retries_made]
    else:
        # Retries exhausted, and no Catch: the execution fails with the endpoint's named error.
        assert response["status"] == "FAILED", response
        assert "nextState" not in response


@pytest.mark.parametrize("error_name", LAMBDA_SERVICE_ERRORS)
@pytest.mark.parametrize("state", TASKS)
def test_every_task_retries_lambda_service_errors(run_state, state, error_name):
    error = {"error": error_name, "cause": "Rate Exceeded."}
    response = run_state(state, load_event("classify_image"), error=error)
    assert response["status"] == "RETRIABLE", response
    assert response["error"] == error_name


@pytest.mark.parametrize("state", TASKS)
def test_lambda_service_retries_back_off_then_stop_after_three(run_state, state):
    error = {"error": "Lambda.TooManyRequestsException", "cause": "Rate Exceeded."}
    event = load_event("classify_image")
    for retries_made, expected_backoff in enumerate(LAMBDA_SERVICE_BACKOFF_S):
        response = run_state(state, event, error=error, retry_count=retries_made)
        assert response["status"] == "RETRIABLE", (retries_made, response)
        assert response["inspectionData"]["errorDetails"]["retryBackoffIntervalSeconds"] == expected_backoff
    exhausted = run_state(state, event, error=error, retry_count=len(LAMBDA_SERVICE_BACKOFF_S))
    assert exhausted["status"] == "FAILED", exhausted
    assert exhausted["error"] == error["error"]
    assert "nextState" not in exhausted


@pytest.mark.parametrize(
    ("state", "error_name"),
    [(state, name) for state in TASKS for name in NEVER_RETRIED if (state, name) not in HANDLED],
)
def test_other_errors_fail_the_state_at_once(run_state, state, error_name):
    error = {"error": error_name, "cause": json.dumps({"errorMessage": f"{error_name}: x", "errorType": error_name})}
    response = run_state(state, load_event("classify_image"), error=error)
    assert response["status"] == "FAILED", response
    assert (response["error"], response["cause"]) == (error["error"], error["cause"])
    assert "nextState" not in response


# --- Which rule matched ------------------------------------------------------------------------------


def test_inspection_data_names_the_rule_that_matched(run_state, ministack_lacks):
    ministack_lacks("TestState reports retryIndex 0 for every retrier and no catchIndex")
    unavailable = lambda_error(contract.EndpointUnavailableError("down"))
    retried = run_state(CLASSIFY, load_event("classify_image"), error=unavailable)
    assert retried["inspectionData"]["errorDetails"]["retryIndex"] == 1  # the classifier's second retrier
    throttled = run_state(
        CLASSIFY, load_event("classify_image"), error={"error": LAMBDA_SERVICE_ERRORS[-1], "cause": "x"}
    )
    assert throttled["inspectionData"]["errorDetails"]["retryIndex"] == 0
    low = lambda_error(contract.LowConfidenceError("low"))
    caught = run_state(FILTER, load_event("low_confidence"), error=low)
    assert caught["inspectionData"]["errorDetails"]["catchIndex"] == 0
