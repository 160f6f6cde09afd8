"""`scones console` on a real emulator, in real headless Chromium: the graph drawn from the deployed definition
with one node per state; a routed execution, one rejected as low confidence, one failed with
EndpointUnavailableError and a batch, each drawn with its path and colours; a click shows a state's input; an
uploaded image starts an execution that appears on the list without a reload; and the security rules (Host
check, token, origin, escaping of keys, inputs and error causes). With SCONES_CONSOLE_SCREENSHOT=PATH it also
writes the screenshot the README shows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

import boto3
import pytest

from cloud.aws import AwsTarget
from scones.console.server import ConsoleServer
from scones.local.emulator import is_ministack
from scones.local.supervisor import free_port
from scones.workflow.execution import start_execution, upload_image, wait_for_execution

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0
LIVE_DEADLINE_MS = 30_000  # upload to the row on the page: about a second (trigger + one poll)
SCREENSHOT_VAR = "SCONES_CONSOLE_SCREENSHOT"
HOSTILE = '<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">'


def browser_executable() -> str | None:
    """Debian's chromium, as tests/conftest.py finds it for the monitoring report's test."""
    candidates = ("chromium", "chromium-browser", "google-chrome")
    return os.environ.get("SCONES_BROWSER") or next(filter(None, map(shutil.which, candidates)), None)


def count_states(definition: dict) -> int:
    total = 0
    for state in definition["States"].values():
        total += 1
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            total += count_states(processor)
    return total


@pytest.fixture(scope="module")
def console(stack, tmp_path_factory):
    name = stack["StateMachineArn"].rsplit(":", 1)[-1].removesuffix("-image-classification")
    with ConsoleServer(
        AwsTarget(), stack, stack_name=name, target="the test emulator", workdir=tmp_path_factory.mktemp("console")
    ) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    executable = browser_executable()
    if executable is None:
        message = "no Chromium (apt-get install chromium, or set SCONES_BROWSER)"
        if os.environ.get("CI") == "true" or os.environ.get("SCONES_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    assert not errors, errors  # the console's script ran without an error


def run(sfn, machine_arn: str, event: dict, prefix: str = "console-it"):
    arn = start_execution(sfn, machine_arn, event, prefix)
    return wait_for_execution(sfn, arn, EXECUTION_TIMEOUT_S)


@pytest.fixture(scope="module")
def executions(stack, test_images, aws_endpoint):
    """One routed, one rejected, one failed with EndpointUnavailableError (the classifier pointed at a port
    nobody listens on, then restored), and one batch over three images."""
    sfn, s3 = boto3.client("stepfunctions"), boto3.client("s3")
    bucket, machine = stack["ImageBucketName"], stack["StateMachineArn"]

    def event_for(path: Path) -> dict:
        return {"s3_bucket": bucket, "s3_key": upload_image(s3, bucket, path.read_bytes())}

    routed = run(sfn, machine, event_for(test_images.confident["bicycle"].path))
    rejected = run(sfn, machine, event_for(test_images.unsure.path))
    lam = boto3.client("lambda")
    function = stack["ClassifyImageFunctionName"]
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    dead = {**variables, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://127.0.0.1:{free_port()}"}
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": dead})
    lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    try:
        failed = run(sfn, machine, event_for(test_images.confident["motorcycle"].path))
    finally:
        lam.update_function_configuration(FunctionName=function, Environment={"Variables": variables})
        lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    prefix = f"console-batch-{uuid.uuid4().hex[:8]}/"
    for i, image in enumerate(
        (test_images.confident["bicycle"], test_images.unsure, test_images.confident["motorcycle"])
    ):
        s3.put_object(Bucket=bucket, Key=f"{prefix}{i}.png", Body=image.path.read_bytes())
    batch = run(sfn, stack["BatchStateMachineArn"], {"bucket": bucket, "prefix": prefix})
    assert routed.status == "SUCCEEDED", routed.summary()
    assert rejected.error_name == "LowConfidenceError", rejected.summary()
    assert failed.error_name == "EndpointUnavailableError", failed.summary()
    assert batch.status == "SUCCEEDED", batch.summary()
    return {"routed": routed, "rejected": rejected, "failed": failed, "batch": batch}


def open_execution(page, console, arn: str) -> dict[str, str]:
    """The execution page; {state name: the status its node is drawn with}."""
    page.goto(f"{console.url}/execution?{urlencode({'arn': arn})}")
    nodes = page.locator("svg#graph g.state")
    return {
        nodes.nth(i).get_attribute("data-state"): nodes.nth(i).get_attribute("data-status")
        for i in range(nodes.count())
    }


def taken_edges(page) -> set[tuple[str, str]]:
    edges = page.locator("svg#graph polyline.edge.taken")
    return {
        (edges.nth(i).get_attribute("data-source"), edges.nth(i).get_attribute("data-target"))
        for i in range(edges.count())
    }


def test_the_graph_has_one_node_per_state_of_the_deployed_definition(console, stack, executions, page):
    sfn = boto3.client("stepfunctions")
    for machine, arn in (
        ("StateMachineArn", executions["routed"].execution_arn),
        ("BatchStateMachineArn", executions["batch"].execution_arn),
    ):
        deployed = json.loads(sfn.describe_state_machine(stateMachineArn=stack[machine])["definition"])
        drawn = open_execution(page, console, arn)
        assert len(drawn) == count_states(deployed), (machine, sorted(drawn))


def test_a_routed_execution_is_drawn_green_along_its_path(console, executions, page):
    drawn = open_execution(page, console, executions["routed"].execution_arn)
    assert drawn == {
        "Serialize Image Data": "succeeded",
        "Classify Image": "succeeded",
        "Filter Low Confidence": "succeeded",
        "Low Confidence": "not-run",
    }
    assert taken_edges(page) == {
        ("__start__", "Serialize Image Data"),
        ("Serialize Image Data", "Classify Image"),
        ("Classify Image", "Filter Low Confidence"),
        ("Filter Low Confidence", "__end__"),
    }
    # The image read from S3, its scores and the threshold.
    assert page.locator("#thumbnail").evaluate("i => i.complete && i.naturalWidth") > 0
    scores = [float(t) for t in page.locator("#scores td.score").all_inner_texts()]
    assert scores == pytest.approx(executions["routed"].inferences, abs=1e-4)
    assert page.locator("#threshold").inner_text() == f"{float(console.store.outputs['ConfidenceThreshold']):.4f}"


def test_a_rejected_execution_shows_where_low_confidence_stopped_it(console, executions, page, aws_endpoint):
    drawn = open_execution(page, console, executions["rejected"].execution_arn)
    assert drawn["Serialize Image Data"] == drawn["Classify Image"] == "succeeded"
    if is_ministack(aws_endpoint):  # its errors lose their names, so the Catch never applies (cloud/EMULATORS.md)
        assert drawn["Filter Low Confidence"] == "rejected" and drawn["Low Confidence"] == "not-run"
    else:  # caught into the Low Confidence Fail state, as on AWS
        assert drawn["Filter Low Confidence"] == "caught" and drawn["Low Confidence"] == "caught"
        assert ("Filter Low Confidence", "Low Confidence") in taken_edges(page)
    assert "rejected" in page.locator("h1 .outcome-badge").inner_text()


def test_a_failed_execution_is_drawn_red_where_the_endpoint_was_unavailable(console, executions, page, aws_endpoint):
    drawn = open_execution(page, console, executions["failed"].execution_arn)
    assert drawn == {
        "Serialize Image Data": "succeeded",
        "Classify Image": "failed",
        "Filter Low Confidence": "not-run",
        "Low Confidence": "not-run",
    }
    page.locator('g.state[data-state="Classify Image"]').click()
    assert page.locator("#detail-error").inner_text().startswith("EndpointUnavailableError")
    if not is_ministack(aws_endpoint):  # the state machine's Retry applies where error names are kept
        attempts = int(page.locator("#detail-attempts").inner_text())
        assert attempts > 1
        assert (
            page.locator('g.state[data-state="Classify Image"] .badge.attempts').text_content() == f"attempt {attempts}"
        )


def test_a_batch_shows_its_map_run_items_and_summary(console, executions, page, aws_endpoint):
    drawn = open_execution(page, console, executions["batch"].execution_arn)
    for state in ("Apply Defaults", "Merge Input", "Classify Each Image", "Summarize Batch"):
        assert drawn[state] == "succeeded", (state, drawn)
    inner = "Classify Each Image/"
    assert drawn[inner + "Routed"] == "succeeded" and drawn[inner + "Item Failed"] == "not-run"
    if is_ministack(aws_endpoint):  # the low-confidence item lands in Filter Failed there (cloud/EMULATORS.md)
        assert drawn[inner + "Filter Failed"] == "rejected" and drawn[inner + "Rejected"] == "not-run"
    else:
        assert drawn[inner + "Rejected"] == "caught" and drawn[inner + "Filter Failed"] == "not-run"
    routed_badge = page.locator(f'g.state[data-state="{inner}Routed"] .badge.items').text_content()
    assert routed_badge == "2 items"
    assert page.locator(".map-run td.items-total").first.inner_text() == "3"
    assert page.locator(".items tr.item").count() == 3
    summary = json.loads(page.locator("#batch-summary").inner_text())
    assert summary["totals"]["items"] == 3


def test_a_click_on_a_state_shows_its_input_and_output(console, executions, page):
    open_execution(page, console, executions["routed"].execution_arn)
    page.locator('g.state[data-state="Classify Image"]').click()
    shown = json.loads(page.locator("#detail-input").inner_text())
    described = boto3.client("stepfunctions").describe_execution(executionArn=executions["routed"].execution_arn)
    assert shown["s3_key"] == json.loads(described["input"])["s3_key"]
    assert json.loads(page.locator("#detail-output").inner_text())["inferences"] == pytest.approx(
        executions["routed"].inferences
    )
    assert page.locator("#detail-status").inner_text() == "succeeded"
    page.locator("#logs table.logs, #logs p").first.wait_for()
    correlation = page.locator("#correlation-id").inner_text()
    lines = page.locator("#logs tr.log-line")
    lines.first.wait_for(timeout=LIVE_DEADLINE_MS)
    assert lines.count() >= 3, correlation  # each of the three functions logged it
    if screenshot := os.environ.get(SCREENSHOT_VAR):
        page.screenshot(path=screenshot, full_page=False)


def test_an_uploaded_image_starts_an_execution_that_appears_live(console, stack, data_dir, page, tmp_path):
    # An image no other test sends, so its key is new on the list.
    source = sorted((data_dir / "motorcycle").glob("*.png"))[-1]
    image = source.read_bytes()
    key = f"{stack['UploadTriggerPrefix']}{hashlib.sha256(image).hexdigest()}.png"
    page.goto(f"{console.url}/executions")
    assert page.locator("tr.execution td.key", has_text=key).count() == 0
    upload = tmp_path / "drop.png"
    upload.write_bytes(image)
    page.locator("#file").set_input_files(str(upload))  # the drop zone's file picker: the same upload as a drop
    page.locator("#action-result").filter(has_text="uploaded").wait_for(timeout=LIVE_DEADLINE_MS)
    row = page.locator("tr.execution", has=page.locator("td.key", has_text=key))
    row.first.wait_for(timeout=LIVE_DEADLINE_MS)  # appeared without a reload: the page polls every second
    # ... and its end appears live too.
    page.locator("tr.execution:not(.running)", has=page.locator("td.key", has_text=key)).first.wait_for(
        timeout=EXECUTION_TIMEOUT_S * 1000
    )
    # The search by key keeps only it.
    page.locator("#filters input[name=q]").fill(key)
    deadline = time.monotonic() + 10
    while page.locator("tr.execution").count() != 1 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.locator("tr.execution td.key").all_inner_texts() == [key]


# --- security -------------------------------------------------------------------------------------------


def request(url: str, *, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    sent = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(sent, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_host_that_is_not_ours_is_refused(console):
    status, _ = request(f"{console.url}/executions", headers={"Host": f"rebinding.example:{console.port}"})
    assert status == 421
    assert request(f"{console.url}/executions")[0] == 200
    assert request(f"{console.url}/executions", headers={"Host": f"localhost:{console.port}"})[0] == 200


def test_writes_need_the_consoles_token_and_origin(console, stack):
    body = json.dumps({"machine": "image", "input": {"s3_bucket": stack["ImageBucketName"], "s3_key": "x.png"}})
    url = f"{console.url}/actions/start"
    assert request(url, method="POST", body=body.encode())[0] == 403
    assert request(url, method="POST", body=body.encode(), headers={"X-Console-Token": "guess"})[0] == 403
    evil = {"X-Console-Token": console.settings.token, "Origin": "http://rebinding.example"}
    assert request(url, method="POST", body=body.encode(), headers=evil)[0] == 403
    assert request(f"{console.url}/actions/upload", method="POST", body=b"\x89PNG")[0] == 403


def test_keys_inputs_and_error_causes_are_shown_as_text(console, stack, test_images, page):
    sfn, s3 = boto3.client("stepfunctions"), boto3.client("s3")
    bucket = stack["ImageBucketName"]
    key = f"direct/{HOSTILE}.png"
    s3.put_object(Bucket=bucket, Key=key, Body=test_images.confident["bicycle"].path.read_bytes())
    routed = run(sfn, stack["StateMachineArn"], {"s3_bucket": bucket, "s3_key": key, "note": HOSTILE})
    missing = run(sfn, stack["StateMachineArn"], {"s3_bucket": bucket, "s3_key": f"direct/gone-{HOSTILE}.png"})
    assert routed.status == "SUCCEEDED" and missing.status == "FAILED" and HOSTILE in missing.error_message
    for arn in (routed.execution_arn, missing.execution_arn):
        page.goto(f"{console.url}/execution?{urlencode({'arn': arn})}")
        page.locator('g.state[data-state="Serialize Image Data"]').click()
        assert HOSTILE in json.loads(page.locator("#execution-input").inner_text())["s3_key"]
        assert HOSTILE in json.loads(page.locator("#detail-input").inner_text())["s3_key"]
        assert page.evaluate("window.__xss") is None
        assert page.locator("img[src=x]").count() == 0
    assert HOSTILE in page.locator("#execution-error").inner_text()  # the cause of the missing image
    page.locator('g.state[data-state="Serialize Image Data"]').click()
    assert "<script>window.__xss=1</script>" in page.locator("#detail-cause").inner_text()
    page.goto(f"{console.url}/executions?{urlencode({'q': HOSTILE})}")
    assert HOSTILE in page.locator("tr.execution td.key").first.inner_text()
    assert page.evaluate("window.__xss") is None and page.locator("img[src=x]").count() == 0
