"""`scones up --debug FUNCTION` (issue 22): a debugger attaches to the function as a real execution reaches it and
stops at a breakpoint set in the handler's source file; the execution then finishes. The debugger is driven here
through the Debug Adapter Protocol, as VS Code drives debugpy."""

from __future__ import annotations

import pytest

from cloud.aws import AwsTarget
from scones.errors import EXIT_OK
from scones.local.state_file import read_state
from scones.local.supervisor import free_port
from scones.workflow.execution import start_execution, upload_image, wait_for_execution

from .conftest import NEEDS_UP_ON_THE_HOST
from .dap_client import DapClient
from .dev_loop import copy_sources, start_up_on_suite_emulator, stop_up, workdir_with_model

pytestmark = [pytest.mark.integration, NEEDS_UP_ON_THE_HOST]

BREAKPOINT_AT = "    predicted = predicted_class(inferences)\n"


def test_a_debugger_stops_at_a_breakpoint_in_the_handler_during_an_execution(
    aws_endpoint, model_dir, test_images, tmp_path
):
    workdir = workdir_with_model(tmp_path, model_dir)
    sources = copy_sources(tmp_path / "src")
    handler = sources.lambdas_dir / "filter_low_confidence.py"
    line = handler.read_text().splitlines(keepends=True).index(BREAKPOINT_AT) + 1
    port = free_port()
    up, _ = start_up_on_suite_emulator(workdir, sources, "--debug", "filter-low-confidence", "--debug-port", str(port))
    client = None
    try:
        announced = up.wait_for_line("debug: ")
        assert f"127.0.0.1:{port}" in announced and "filter-low-confidence" in announced
        outputs = read_state(workdir).outputs
        aws = AwsTarget()
        sfn = aws.client("stepfunctions")
        key = upload_image(
            aws.client("s3"), outputs["ImageBucketName"], test_images.confident["bicycle"].path.read_bytes()
        )
        execution = start_execution(
            sfn, outputs["StateMachineArn"], {"s3_bucket": outputs["ImageBucketName"], "s3_key": key}
        )

        client = DapClient("127.0.0.1", port)  # listening once the execution has reached the function
        client.request(
            "initialize",
            clientID="scones-test",
            adapterID="debugpy",
            pathFormat="path",
            linesStartAt1=True,
            columnsStartAt1=True,
        )
        attach = client.send("attach", justMyCode=False)
        client.event("initialized")
        placed = client.request("setBreakpoints", source={"path": str(handler)}, breakpoints=[{"line": line}])
        assert placed["body"]["breakpoints"][0]["verified"], placed
        client.request("configurationDone")
        client.wait_for(lambda m: m.get("type") == "response" and m.get("request_seq") == attach)

        stopped = client.event("stopped", timeout_s=120)
        assert stopped["body"]["reason"] == "breakpoint", stopped
        thread = stopped["body"]["threadId"]
        frame = client.request("stackTrace", threadId=thread, levels=1)["body"]["stackFrames"][0]
        assert (frame["source"]["path"], frame["line"]) == (str(handler), line)
        seen = client.request("evaluate", expression="event['s3_key']", frameId=frame["id"], context="repl")
        assert seen["body"]["result"] == repr(key)

        client.request("continue", threadId=thread)
        client.request("disconnect", terminateDebuggee=False)
        result = wait_for_execution(sfn, execution, timeout_s=120)
        assert result.status == "SUCCEEDED", result.summary()
    finally:
        if client is not None:
            client.close()
        code, output = stop_up(up)
    assert code == EXIT_OK, output
