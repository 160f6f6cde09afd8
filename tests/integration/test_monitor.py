"""`scones monitor` after the pipeline has run, against the real emulator: from the folder the suite's model
server captured the workflow's executions into, and from a bucket a model server on the emulator captured
real images into. Each report's page is opened in a real headless browser, which must load every picture."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.aws import AwsTarget
from local_model.capture_reader import read_captured_inferences
from scones import cli
from scones.local.model_server import ModelServer
from scones.workflow.execution import run_image

from .conftest import ENDPOINT_NAME, MODEL_URL_VAR

pytestmark = pytest.mark.integration

EXECUTION_TIMEOUT_S = 120.0
IMAGES_TO_S3 = 60
CAPTURE_DEADLINE_S = 60.0


def monitor(*args, workdir: Path) -> dict:
    ran = CliRunner().invoke(
        cli.app, ["monitor", *map(str, args), "--workdir", str(workdir), "--json"], prog_name="scones"
    )
    assert ran.exit_code == 0, (ran.stdout, ran.stderr)
    return json.loads(ran.stdout)


def check_page(summary: dict, rendered_images) -> None:
    images = rendered_images(Path(summary["report"]))
    assert sorted(src for src, _, _ in images) == ["classes.png", "confidence.png", "lowest.png"]
    assert all(loaded and width > 0 for _, loaded, width in images), images


def settled(url: str) -> None:
    deadline = time.monotonic() + CAPTURE_DEADLINE_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            if json.loads(response.read())["capture"]["records_buffered"] == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the model server at {url} still buffers captures after {CAPTURE_DEADLINE_S} s")


@pytest.mark.skipif(
    bool(os.environ.get(MODEL_URL_VAR)), reason="the compose model server's capture folder is not on this host"
)
def test_monitor_of_the_workflows_captures_in_a_folder(
    stack, model_server, model_dir, test_images, tmp_path, rendered_images
):
    for image in [*test_images.confident.values(), test_images.unsure]:
        result = run_image(image.path.read_bytes(), stack, AwsTarget(), timeout_s=EXECUTION_TIMEOUT_S)
        assert result.status in ("SUCCEEDED", "FAILED"), result.summary()
    settled(model_server.url)
    expected = len(list(read_captured_inferences(model_server.capture_destination)))
    summary = monitor(
        "--source",
        model_server.capture_destination,
        "--baseline",
        model_dir,
        "--out",
        tmp_path / "report",
        workdir=tmp_path / "work",
    )
    assert summary["records"] == expected >= 3
    assert summary["unreadable"]["total"] == 0
    assert "overall" in summary["drift"], summary["drift"]  # the suite's model has its baseline
    check_page(summary, rendered_images)


def test_monitor_of_captures_in_a_bucket_on_the_emulator(stack, model_dir, data_dir, tmp_path, rendered_images):
    prefix = f"monitor-{uuid.uuid4().hex[:8]}"
    destination = f"s3://{stack['ImageBucketName']}/{prefix}"
    images = sorted((data_dir / "bicycle").glob("*.png"))[: IMAGES_TO_S3 // 2]
    images += sorted((data_dir / "motorcycle").glob("*.png"))[: IMAGES_TO_S3 // 2]
    server = ModelServer(
        model_dir, capture_destination=destination, endpoint_name=ENDPOINT_NAME, log_path=tmp_path / "server.log"
    )
    with server:
        for path in images:
            request = urllib.request.Request(
                f"{server.url}/invocations", data=path.read_bytes(), headers={"Content-Type": "image/png"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        settled(server.url)
    summary = monitor(
        "--source", destination, "--baseline", model_dir, "--out", tmp_path / "report", workdir=tmp_path / "work"
    )
    assert summary["destination"] == destination
    assert summary["records"] == summary["scored"] == IMAGES_TO_S3
    assert sum(summary["by_class"].values()) == IMAGES_TO_S3
    assert summary["drift"]["overall"]["n_window"] == IMAGES_TO_S3
    check_page(summary, rendered_images)
