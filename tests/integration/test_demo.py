"""`scones demo --quick` end to end, as a user runs it: the real console command in a child process, on a
small image folder, against the embedded emulator it starts itself (or the one AWS_ENDPOINT_URL names, e.g.
LocalStack), with a real model server, real executions and real data capture. Then checks the report and
that nothing is left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from lambdas.contract import CLASSES, DEFAULT_CONFIDENCE_THRESHOLD
from scones.local.emulator import is_reachable
from scones.local.state_file import read_state
from scones.local.supervisor import is_port_free

pytestmark = pytest.mark.integration

IMAGES_PER_CLASS = 100  # 160 to train on, 40 held out: the whole demo takes about a minute
DEMO_TIMEOUT_S = 900  # training on two busy cores, cold starts: generous; a normal run takes 1 to 2 minutes


@pytest.fixture(scope="module")
def small_data_dir(data_dir, tmp_path_factory) -> Path:
    """An image folder without a test split (the demo holds 20% out), linked from SCONES_DATA_DIR's images."""
    root = tmp_path_factory.mktemp("small-bikes")
    for label in CLASSES:
        (root / label).mkdir()
        for image in sorted((data_dir / label).glob("*.png"))[:IMAGES_PER_CLASS]:
            (root / label / image.name).symlink_to(image.resolve())
    return root


@dataclass(frozen=True)
class DemoRun:
    result: subprocess.CompletedProcess
    workdir: Path
    stack_name: str
    external_emulator: str | None  # AWS_ENDPOINT_URL, when the demo used that emulator instead of its own

    @property
    def out(self) -> str:
        return self.result.stdout

    @property
    def report(self) -> dict:
        assert self.result.returncode == 0, explain(self.result)
        return json.loads((self.workdir / "reports" / "demo-report.json").read_text())


@pytest.fixture(scope="module")
def demo_run(small_data_dir, tmp_path_factory) -> DemoRun:
    """One run of `scones demo --quick`, shared by the tests below."""
    workdir = tmp_path_factory.mktemp("demo-workdir")
    stack_name = f"scones-demo-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "scones", "demo", "--data-dir", str(small_data_dir), "--quick"]
    command += ["--workdir", str(workdir), "--stack-name", stack_name, "--concurrency", "4"]
    # As the user's shell has it: AWS_ENDPOINT_URL, if set, names the emulator to use instead of ministack.
    result = subprocess.run(command, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, env=dict(os.environ))
    return DemoRun(result, workdir, stack_name, os.environ.get("AWS_ENDPOINT_URL") or None)


def explain(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr (end)\n{result.stderr[-4000:]}"


def test_the_demo_succeeds_and_prints_every_step(demo_run):
    assert demo_run.result.returncode == 0, explain(demo_run.result)
    out, stack_name = demo_run.out, demo_run.stack_name
    for step in range(1, 8):
        assert f"[{step}/7] " in out
    assert "160 images to train on, 40 to test (held out: the folder has no test/ split)" in out
    assert "quick recipe (15 epochs)" in out
    assert f"create {stack_name}" in out and f"{stack_name}: CREATE_COMPLETE" in out
    assert "Traceback" not in demo_run.result.stderr


def test_the_report_has_sane_numbers(demo_run):
    report = demo_run.report
    n = report["n_images"]
    assert n == 40
    assert report["routed"] + report["rejected"] + report["failed"] == n
    assert sum(sum(row.values()) for row in report["confusion"].values()) == n
    assert 0.5 < report["accuracy"] <= 1.0  # a quickly trained model, still better than a coin
    if report["routed"]:
        assert 0.0 <= report["routed_accuracy"] <= 1.0
    assert 0 < report["latency_p50_s"] <= report["latency_p99_s"] < 120
    # The stack's ConfidenceThreshold output (which the report reads) is the one training chose in model.json,
    # or the default when it chose none (a 15-epoch model on 160 images often cannot reach 0.99).
    chosen = json.loads((demo_run.workdir / "opt_ml" / "model" / "model.json").read_text())["confidence_threshold"]
    expected = DEFAULT_CONFIDENCE_THRESHOLD if chosen["value"] is None else chosen["value"]
    assert report["threshold"] == expected, chosen
    assert f"confidence threshold {expected} (" in demo_run.out
    assert 0.0 <= report["coverage"] <= 1.0
    assert Path(report["extra"]["precision_coverage_plot"]).read_bytes().startswith(b"\x89PNG")

    # The same numbers, as printed.
    out = demo_run.out
    outcomes = f"{report['routed']} \\(\\d+%\\) routed, {report['rejected']} \\(\\d+%\\) rejected as low confidence"
    assert re.search(outcomes, out), out
    assert re.search(rf"accuracy +{report['accuracy']:.3f} ", out), out
    assert re.search(r"latency +p50 \d+ ms, p99 \d+ ms", out), out


def test_every_execution_ended_and_none_failed(demo_run):
    report = demo_run.report
    # A timed-out execution is stopped and counted failed with ExecutionTimeoutError: none may be.
    assert report["failed"] == 0 and report["errors"] == {}, report["errors"]
    assert ", 0 failed" in demo_run.out


def test_every_scored_image_was_captured(demo_run):
    report = demo_run.report
    scored = report["routed"] + report["rejected"]
    assert report["captured"] >= scored > 0
    assert report["capture_destination"].endswith("/data-capture")
    assert re.search(rf"captured +{report['captured']} inference records in s3://", demo_run.out)
    assert (demo_run.workdir / "reports" / "captures.png").read_bytes().startswith(b"\x89PNG")


def test_the_demo_writes_the_monitoring_report_and_it_renders(demo_run, rendered_images):
    page = demo_run.workdir / "reports" / "monitor" / "index.html"
    assert demo_run.report["extra"]["monitor_report"] == str(page)
    images = rendered_images(page)
    assert len(images) == 3 and all(loaded and width > 0 for _, loaded, width in images), images
    assert f'<td id="records">{demo_run.report["captured"]}</td>' in page.read_text()


def test_the_demo_left_nothing_behind(demo_run):
    assert demo_run.result.returncode == 0, explain(demo_run.result)
    out, stack_name = demo_run.out, demo_run.stack_name
    assert read_state(demo_run.workdir) is None  # no session recorded
    model_server = re.search(r"starting the model server on (http://127\.0\.0\.1:(\d+))", out)
    assert model_server, out
    assert is_port_free("127.0.0.1", int(model_server.group(2)))
    if demo_run.external_emulator is None:
        emulator = re.search(r"\[1/7\] emulator: embedded ministack at (http://127\.0\.0\.1:\d+)", out)
        assert emulator, out
        assert not is_reachable(emulator.group(1))
        return
    # An emulator we did not start is still there: the stack and both buckets must be gone from it.
    cfn, s3 = boto3.client("cloudformation"), boto3.client("s3")
    stacks = cfn.list_stacks()["StackSummaries"]
    assert all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks if s["StackName"] == stack_name), stacks
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.startswith(stack_name.lower())], buckets
