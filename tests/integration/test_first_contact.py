"""First contact, as a new user has it: `scones up` in one terminal, the export line it prints copied into a
second terminal, and clients this project did not write there: the AWS CLI (1.x) and the SageMaker Python
SDK's Predictor. The workdir holds only model/model.tar.gz, as when it was copied from another machine.

The second terminal is a subprocess whose environment is PATH, an empty HOME and the exported variables:
nothing else of the suite's configuration reaches the clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from local_model.classifier import pack_model_tar
from scones.pipeline import steps

from .conftest import ENDPOINT_NAME, NEEDS_UP_ON_THE_HOST
from .up_process import start_up

EXECUTION_TIMEOUT_S = 120

pytestmark = NEEDS_UP_ON_THE_HOST


class UpSession:
    def __init__(self, process: subprocess.Popen, lines: list[str]):
        self.process, self.lines = process, lines

    def exported(self) -> dict[str, str]:
        (line,) = [ln.strip().removeprefix("export ") for ln in self.lines if ln.strip().startswith("export ")]
        return dict(pair.split("=", 1) for pair in line.split())

    def output(self, name: str) -> str:
        (value,) = [ln.split()[1] for ln in self.lines if ln.split()[:1] == [name]]
        return value


@pytest.fixture(scope="module")
def up_session(aws_endpoint, model_dir, tmp_path_factory):
    """`scones up` running against the suite's emulator, from a workdir holding only model.tar.gz."""
    workdir = tmp_path_factory.mktemp("first-contact") / "work"
    paths = steps.model_paths(workdir)
    pack_model_tar(model_dir, paths.tarball)
    up = start_up(workdir, f"scones-first-{uuid.uuid4().hex[:8]}")
    process, lines = up.process, up.lines
    try:
        yield UpSession(process, lines)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0, "\n".join(lines)
    assert not (workdir / "state.json").exists()  # up forgot its session on the way out


@pytest.fixture
def second_terminal(up_session, tmp_path):
    """Run a command with PATH, an empty HOME and exactly the variables `scones up` told the user to export."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **up_session.exported()}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check:
            assert result.returncode == 0, f"{args}: {result.stderr}"
        return result

    return run


def aws(*args: str) -> list[str]:
    return [sys.executable, "-m", "awscli", *args]


def test_up_prints_one_export_line_for_every_client(up_session):
    exported = up_session.exported()
    model_server = up_session.output("ModelServerUrl")
    assert exported["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == model_server
    assert model_server.startswith("http://127.0.0.1:")
    assert exported["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(exported)


def test_aws_cli_drives_the_workflow(up_session, second_terminal, test_images, tmp_path):
    image = test_images.confident["bicycle"]
    bucket, machine = up_session.output("ImageBucketName"), up_session.output("StateMachineArn")
    key = f"direct/first-contact-{uuid.uuid4().hex[:8]}.png"
    second_terminal(*aws("s3", "cp", str(image.path), f"s3://{bucket}/{key}"))
    event = json.dumps({"s3_bucket": bucket, "s3_key": key})
    started = second_terminal(
        *aws("stepfunctions", "start-execution", "--state-machine-arn", machine, "--input", event)
    )
    arn = json.loads(started.stdout)["executionArn"]
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    while True:
        described = second_terminal(*aws("stepfunctions", "describe-execution", "--execution-arn", arn))
        described = json.loads(described.stdout)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["s3_key"] == key and output["inferences"] == pytest.approx(image.scores, abs=1e-5)


def test_aws_cli_invokes_the_endpoint(second_terminal, test_images, tmp_path):
    image = test_images.confident["motorcycle"]
    answer = tmp_path / "answer.json"
    second_terminal(
        *aws("sagemaker-runtime", "invoke-endpoint", "--endpoint-name", ENDPOINT_NAME),
        *("--content-type", "image/png", "--body", f"fileb://{image.path}", str(answer)),
    )
    assert json.loads(answer.read_text()) == pytest.approx(image.scores, abs=1e-5)


def test_a_misspelt_endpoint_fails_locally_as_on_sagemaker(second_terminal, test_images, tmp_path):
    image = test_images.confident["motorcycle"]
    result = second_terminal(
        *aws("sagemaker-runtime", "invoke-endpoint", "--endpoint-name", f"{ENDPOINT_NAME}-typo"),
        *("--content-type", "image/png", "--body", f"fileb://{image.path}", str(tmp_path / "answer.json")),
        check=False,
    )
    assert result.returncode != 0
    assert "ValidationError" in result.stderr and f"Endpoint {ENDPOINT_NAME}-typo not found" in result.stderr


# As the README gives it: the SDK's default session, configured by the exported variables alone.
SDK_PREDICT = """
import json, sys
from sagemaker.deserializers import JSONDeserializer
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer

predictor = Predictor(sys.argv[1], serializer=IdentitySerializer("image/png"), deserializer=JSONDeserializer())
print(json.dumps(predictor.predict(open(sys.argv[2], "rb").read())))
"""


def test_sagemaker_sdk_predictor_gets_the_scores(second_terminal, test_images):
    image = test_images.confident["bicycle"]
    result = second_terminal(sys.executable, "-c", SDK_PREDICT, ENDPOINT_NAME, str(image.path))
    assert json.loads(result.stdout.strip().splitlines()[-1]) == pytest.approx(image.scores, abs=1e-5)


def test_the_copied_model_was_unpacked_and_served(up_session):
    assert any("deploying stack" in line for line in up_session.lines)
    workdir = Path(up_session.process.args[up_session.process.args.index("--workdir") + 1])
    assert (steps.model_paths(workdir).model_dir / "model.json").is_file()
