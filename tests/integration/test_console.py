"""`scones console` on a real emulator, in real headless Chromium: the graph drawn from the deployed definition
with one node per state; a routed execution, one rejected as low confidence, one failed with
EndpointUnavailableError and a batch, each drawn with its path and colours; a click shows a state's input; an
uploaded image (picked, or dropped on the drop zone as a real drop event) starts an execution that appears on
the list without a reload; an execution started with a JSON input; a failed execution run again (and the
console saying how); the monitoring report shown and drawn again with what was captured since; and the
security rules (Host check, token, origin, escaping of keys, inputs and error causes, no credential in any
page or answer); a course solution run by `scones solution run`, listed and drawn. With
SCONES_CONSOLE_SCREENSHOT=PATH it also writes the screenshot the README shows."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

import boto3
import pytest
from typer.testing import CliRunner

from cloud.aws import AwsTarget
from scones import cli
from scones.console.monitoring import capture_source
from scones.console.server import ConsoleServer
from scones.local.emulator import is_ministack
from scones.local.model_server import ModelServer
from scones.local.supervisor import free_port
from scones.workflow.execution import start_execution, upload_image, wait_for_execution

from .conftest import ENDPOINT_NAME

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0
LIVE_DEADLINE_MS = 30_000  # upload to the row on the page: about a second (trigger + one poll)
SCREENSHOT_VAR = "SCONES_CONSOLE_SCREENSHOT"
HOSTILE = '<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">'
CAPTURE_DEADLINE_S = 60.0
# The console's own secret key: the emulators check no signature, so a key no page could contain by chance
# shows whether any page or answer carries the credentials the console signs with.
CONSOLE_SECRET = f"scones-console-secret-{uuid.uuid4().hex}"


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
    environment = boto3.Session().get_credentials().get_frozen_credentials()
    session = boto3.Session(aws_access_key_id=environment.access_key, aws_secret_access_key=CONSOLE_SECRET)
    with ConsoleServer(
        AwsTarget(session), stack, stack_name=name, target="the emulator", workdir=tmp_path_factory.mktemp("console")
    ) as server:
        yield server


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


def test_a_cold_list_shows_the_rows_at_once_and_fills_in_what_is_still_being_read(stack, executions, page, tmp_path):
    """A console's first view answers from ListExecutions: its DescribeExecution calls are held here until the
    page has been looked at (the emulator still answers them), then the rows fill in without a reload."""
    name = stack["StateMachineArn"].rsplit(":", 1)[-1].removesuffix("-image-classification")
    routed_arn = executions["routed"].execution_arn
    key = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=routed_arn)["input"])["s3_key"]
    release = threading.Event()

    def hold(**_) -> None:  # returns None: the call then goes to the emulator as usual
        release.wait(LIVE_DEADLINE_MS / 1000)

    with ConsoleServer(AwsTarget(), stack, stack_name=name, target="the emulator", workdir=tmp_path) as cold:
        cold.store.sfn.meta.events.register("before-call.states.DescribeExecution", hold)
        try:
            page.goto(f"{cold.url}/executions")
            reading = page.locator("tr.execution.reading")
            listed = int(page.locator("#count-total").inner_text())
            assert listed >= len(executions) and reading.count() == listed
            assert int(page.locator("#count-reading").inner_text()) == listed
            routed = page.locator(f'tr.execution[data-arn="{routed_arn}"]')
            assert routed.locator("td.key").inner_text() == "reading…"
            assert routed.locator("td.outcome").inner_text() == "routed"  # SUCCEEDED says it without a description
            # A search by key cannot place unread rows: it says so instead of hiding them silently.
            page.locator("#filters input[name=q]").fill(key)
            page.locator("#count-undecided").wait_for(timeout=LIVE_DEADLINE_MS)
            assert page.locator("tr.execution").count() == 0
        finally:
            release.set()
        # Read now: the live table fills in, the search finds the row, and the note is gone.
        page.locator(f'tr.execution[data-arn="{routed_arn}"] td.key', has_text=key).wait_for(timeout=LIVE_DEADLINE_MS)
        page.locator("#reading").wait_for(state="detached", timeout=LIVE_DEADLINE_MS)
        assert page.locator("tr.execution.reading").count() == 0


def drop_file(page, selector: str, data: bytes, name: str, mime: str) -> None:
    """A real drop event on `selector`: a DataTransfer holding the file, as a drag from the desktop sends."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [base64.b64encode(data).decode("ascii"), name, mime],
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_an_image_dropped_on_the_drop_zone_starts_an_execution(console, stack, data_dir, page):
    image = sorted((data_dir / "bicycle").glob("*.png"))[-1]  # one no other test sends
    key = f"{stack['UploadTriggerPrefix']}{hashlib.sha256(image.read_bytes()).hexdigest()}.png"
    page.goto(f"{console.url}/executions")
    drop_file(page, "#dropzone", image.read_bytes(), image.name, "image/png")
    page.locator("#action-result").filter(has_text=key).wait_for(timeout=LIVE_DEADLINE_MS)
    assert "upload trigger" in page.locator("#action-result").inner_text()
    page.locator("tr.execution", has=page.locator("td.key", has_text=key)).first.wait_for(timeout=LIVE_DEADLINE_MS)
    # What was dropped is what S3 holds: the same bytes, under the trigger's prefix.
    stored = boto3.client("s3").get_object(Bucket=stack["ImageBucketName"], Key=key)["Body"].read()
    assert stored == image.read_bytes()


def test_a_dropped_file_that_is_not_an_image_is_refused_and_said_so(console, page):
    page.goto(f"{console.url}/executions")
    drop_file(page, "#dropzone", b"not an image at all", "notes.txt", "text/plain")
    page.locator("#action-result.error").filter(has_text="upload refused").wait_for(timeout=LIVE_DEADLINE_MS)
    assert "not an image" in page.locator("#action-result").inner_text()


def test_an_execution_started_with_a_json_input_opens_on_its_page(console, stack, test_images, page):
    sfn, s3 = boto3.client("stepfunctions"), boto3.client("s3")
    bucket = stack["ImageBucketName"]
    key = upload_image(s3, bucket, test_images.confident["bicycle"].path.read_bytes())
    page.goto(f"{console.url}/executions")
    page.locator("#start-json select[name=machine]").select_option("image")
    page.locator("#start-json textarea[name=input]").fill(json.dumps({"s3_bucket": bucket, "s3_key": key}))
    page.locator("#start-json button[type=submit]").click()
    page.wait_for_url(re.compile(r"/execution\?arn="), timeout=LIVE_DEADLINE_MS)
    arn = page.evaluate("new URLSearchParams(location.search).get('arn')")
    assert json.loads(page.locator("#execution-input").inner_text())["s3_key"] == key
    described = sfn.describe_execution(executionArn=arn)
    assert described["stateMachineArn"] == stack["StateMachineArn"] and described["name"].startswith("console-")
    assert wait_for_execution(sfn, arn, EXECUTION_TIMEOUT_S).status == "SUCCEEDED"


def test_a_failed_execution_is_run_again_and_the_console_says_how(console, stack, page, aws_endpoint):
    sfn = boto3.client("stepfunctions")
    event = {"s3_bucket": stack["ImageBucketName"], "s3_key": f"direct/missing-{uuid.uuid4().hex}.png"}
    failed = run(sfn, stack["StateMachineArn"], event)
    assert failed.status == "FAILED", failed.summary()
    page.goto(f"{console.url}/execution?{urlencode({'arn': failed.execution_arn})}")
    with page.expect_navigation(timeout=LIVE_DEADLINE_MS):  # to the execution run again, once it has said how
        page.locator("#rerun").click()
        said = page.locator("#action-result").filter(has_text="run again by")
        said.wait_for(timeout=LIVE_DEADLINE_MS)
        told = said.inner_text()
    page.locator("svg#graph").wait_for()
    arn = page.evaluate("new URLSearchParams(location.search).get('arn')")
    if "RedriveExecution answered" in told:  # refused (ministack 1.5.33, LocalStack 2026.3.0 community): resent
        assert "a new execution with the same input" in told, told
        assert arn != failed.execution_arn
        again = json.loads(sfn.describe_execution(executionArn=arn)["input"])
        original = json.loads(sfn.describe_execution(executionArn=failed.execution_arn)["input"])
        assert {k: v for k, v in again.items() if k != "id"} == {k: v for k, v in original.items() if k != "id"}
        assert again["id"] != original["id"]  # its own correlation id
    else:  # redriven in place, where the emulator implements it
        assert not is_ministack(aws_endpoint), told  # it has no RedriveExecution (cloud/EMULATORS.md)
        assert "RedriveExecution" in told and arn == failed.execution_arn, told
        assert sfn.describe_execution(executionArn=arn).get("redriveCount", 0) >= 1
    ended = wait_for_execution(sfn, arn, EXECUTION_TIMEOUT_S)
    assert ended.status == "FAILED"  # the image is still missing: run again, it fails the same way


def wait_for_captures(url: str) -> None:
    deadline = time.monotonic() + CAPTURE_DEADLINE_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            if json.loads(response.read())["capture"]["records_buffered"] == 0:
                return
        time.sleep(0.2)  # polled until the deadline
    pytest.fail(f"the model server at {url} still buffers captures after {CAPTURE_DEADLINE_S} s")


def drawn_records(page) -> int:
    """Press "Draw again" and read the number of records in the report the page frames after it reloads."""
    with page.expect_navigation(timeout=EXECUTION_TIMEOUT_S * 1000):  # the page reloads once it is drawn
        page.locator("#draw-report").click()
    report = page.frame_locator("iframe#report")
    report.locator("#records").wait_for(timeout=LIVE_DEADLINE_MS)
    return int(report.locator("#records").inner_text())


def test_the_monitoring_page_shows_the_report_and_draws_it_again(console, stack, model_dir, data_dir, page, tmp_path):
    page.goto(f"{console.url}/monitoring")
    assert capture_source(stack) in page.locator("main code").first.inner_text()
    before = drawn_records(page)
    # Two inferences captured where the console reads (the deployed endpoint's capture prefix) ...
    server = ModelServer(
        model_dir,
        capture_destination=capture_source(stack),
        endpoint_name=ENDPOINT_NAME,
        log_path=tmp_path / "server.log",
    )
    with server:
        for path in sorted((data_dir / "motorcycle").glob("*.png"))[:2]:
            sent = urllib.request.Request(
                f"{server.url}/invocations", data=path.read_bytes(), headers={"Content-Type": "image/png"}
            )
            with urllib.request.urlopen(sent, timeout=30) as response:
                assert response.status == 200
        wait_for_captures(server.url)
    # ... are in the report once it is drawn again, and its charts load from the console.
    page.goto(f"{console.url}/monitoring")
    assert drawn_records(page) == before + 2
    images = page.frame_locator("iframe#report").locator("img")
    assert images.count() >= 2
    for i in range(images.count()):
        assert images.nth(i).evaluate("i => i.complete && i.naturalWidth") > 0


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
    page.locator("tr.execution td.key", has_text=HOSTILE).first.wait_for(timeout=LIVE_DEADLINE_MS)  # once read
    assert HOSTILE in page.locator("tr.execution td.key").first.inner_text()
    assert page.evaluate("window.__xss") is None and page.locator("img[src=x]").count() == 0


def credential_words(*values: str | None) -> list[re.Pattern]:
    """Each credential as a whole word: the emulators' dummy key is `test`, which a name may contain."""
    return [re.compile(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])") for v in values if v]


def test_no_credential_is_rendered_in_any_page_or_answer(console, stack, executions, page):
    signing = console.store.aws.session.get_credentials().get_frozen_credentials()
    assert signing.secret_key == CONSOLE_SECRET  # the console signs with it: it reaches the emulator
    environment = boto3.Session().get_credentials().get_frozen_credentials()  # the emulators' dummy keys
    words = credential_words(
        signing.access_key,
        signing.secret_key,
        signing.token,
        environment.access_key,
        environment.secret_key,
        environment.token,
    )
    token = {"X-Console-Token": console.settings.token}
    answers: dict[str, bytes] = {}

    def get(path: str) -> None:
        answers[f"GET {path}"] = request(f"{console.url}{path}")[1]

    def post(path: str, body: bytes, headers: dict | None = None) -> None:
        answers[f"POST {path}"] = request(f"{console.url}{path}", method="POST", body=body, headers=headers)[1]

    for path in (
        "/executions",
        "/executions/table",
        "/monitoring",
        "/static/console.js",
        "/monitoring/report/index.html",
    ):
        get(path)
    for ended in executions.values():
        arn = urlencode({"arn": ended.execution_arn})
        for path in (f"/execution?{arn}", f"/execution/logs?{arn}"):
            get(path)
    get("/execution?arn=arn:aws:states:us-east-1:000000000000:execution:none:none")  # the error page
    get("/execution?arn=not-an-arn")
    answers["GET (another Host)"] = request(
        f"{console.url}/executions", headers={"Host": f"rebinding.example:{console.port}"}
    )[1]
    start = {"machine": "image", "input": {"s3_bucket": stack["ImageBucketName"], "s3_key": "direct/none.png"}}
    post("/actions/start", json.dumps(start).encode(), {**token, "Content-Type": "application/json"})
    post("/actions/start", b'{"machine": "image", "input": {"s3_bucket": "Not A Bucket!", "s3_key": "x"}}', token)
    post("/actions/start", b"{}")  # refused: no token
    post("/actions/upload", b"not an image", token)
    post("/actions/rerun?" + urlencode({"arn": executions["routed"].execution_arn}), b"{}", token)  # refused
    post("/actions/rerun?" + urlencode({"arn": "not-an-arn"}), b"{}", token)
    post("/monitoring/draw", b"{}", token)
    # ... and what the browser sees once the live table and the logs have been fetched by the page's script.
    page.goto(f"{console.url}/executions")
    page.locator("tr.execution").first.wait_for()
    answers["browser /executions"] = page.content().encode()
    page.goto(f"{console.url}/execution?{urlencode({'arn': executions['routed'].execution_arn})}")
    page.locator("#logs tr.log-line, #logs p").first.wait_for(timeout=LIVE_DEADLINE_MS)
    answers["browser /execution"] = page.content().encode()
    assert all(answers.values()), [where for where, body in answers.items() if not body]
    leaks = [
        (where, word.pattern)
        for where, body in answers.items()
        for word in words
        if word.search(body.decode("utf-8", "replace"))
    ]
    assert leaks == []


def test_a_course_solution_run_by_scones_solution_shows_like_the_projects_own(
    console, stack, model_server, test_images, page, tmp_path
):
    """`scones solution run` names its state machine solution-*: its execution is listed and drawn."""
    root = Path(__file__).parent / "course_solutions" / "single_file"
    result = CliRunner().invoke(
        cli.app,
        [
            "solution",
            "run",
            str(root / "statemachine.json"),
            str(root / "lambda.py"),
            "--image",
            str(test_images.confident["bicycle"].path),
            "--name",
            "console-it",
            "--model-url",
            model_server.lambda_url,
            "--bucket",
            stack["ImageBucketName"],
            "--workdir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (execution,) = json.loads(result.stdout)["executions"]
    page.goto(f"{console.url}/executions")
    row = page.locator(f'tr.execution[data-arn="{execution["execution_arn"]}"]')
    row.wait_for(timeout=LIVE_DEADLINE_MS)  # listed within the console's refresh of the state machines
    assert row.locator("td").nth(1).inner_text() == "solution-console-it"
    drawn = open_execution(page, console, execution["execution_arn"])
    assert drawn == {
        "Serialize Image Data": "succeeded",
        "Classify Image": "succeeded",
        "Filter Low Confidence": "succeeded",
    }
