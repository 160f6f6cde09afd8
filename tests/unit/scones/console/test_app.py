"""The console's routes on an execution that is not there (botocore's Stubber answers as Step Functions does):
each says so with a 404 or a 400 and the reason, never a 500. No network."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from starlette.testclient import TestClient

from cloud.aws import AwsTarget
from scones.console.app import TOKEN_HEADER, ConsoleSettings, create_app
from scones.console.store import ConsoleStore

PORT = 8765  # never bound: the test client calls the application in process
MISSING = "arn:aws:states:us-east-1:000000000000:execution:m:gone"


@pytest.fixture
def console():
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    store = ConsoleStore(AwsTarget(session, allow_aws=True), {"StateMachineArn": "arn:aws:states:::m"})
    settings = ConsoleSettings(port=PORT, target="a stub", stack_name="s")
    app = create_app(store, settings)
    client = TestClient(app, base_url=f"http://127.0.0.1:{PORT}", raise_server_exceptions=False)  # a 500 is seen
    with Stubber(store.sfn) as stubber:
        yield client, stubber, settings
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize("path", ["/execution/logs", "/execution/image"])
def test_the_logs_and_image_of_an_execution_that_is_not_there_are_a_404(console, path):
    client, stubber, _ = console
    stubber.add_client_error("describe_execution", "ExecutionDoesNotExist", "Execution Does Not Exist", 400)
    answer = client.get(path, params={"arn": MISSING})
    assert answer.status_code == 404 and answer.text == "no such execution"


def test_running_again_an_execution_that_is_not_there_is_a_400_with_the_reason(console):
    client, stubber, settings = console
    stubber.add_client_error("describe_execution", "ExecutionDoesNotExist", "Execution Does Not Exist", 400)
    answer = client.post("/actions/rerun", params={"arn": MISSING}, headers={TOKEN_HEADER: settings.token})
    assert answer.status_code == 400
    assert "no execution" in answer.json()["error"] and "ExecutionDoesNotExist" in answer.json()["error"]
