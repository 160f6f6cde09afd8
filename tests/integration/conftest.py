"""The real parts the integration tests run against, once per session: an AWS emulator (the one at
AWS_ENDPOINT_URL, else ministack started here), a quickly trained model behind the real model server,
and the stack deployed with cloud/deploy.py, torn down at the end. A missing part is a failure.
Package-scoped, so that the emulator is gone (and AWS_ENDPOINT_URL restored) before other tests run.

With SCONES_IT_MODEL_URL set, the suite uses that running model server (serving a model trained with
QUICK_HYPERPARAMETERS) instead of its own, and deploys the stack with SCONES_IT_LAMBDA_MODEL_URL, the same
server as the Lambdas reach it: tests/docker/run.py does so for `docker compose up`, where the Lambdas run in
the LocalStack container and reach the model container as http://model:8080."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from cloud.aws import AwsTarget
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from cloud.stack import stack_status
from lambdas.classify_image import invoke_endpoint
from lambdas.contract import CLASSES, DEFAULT_CONFIDENCE_THRESHOLD
from local_model.settings import DEFAULT_ENDPOINT_NAME, VARIANTS_FILE_VAR
from local_model.train import train_from_folder
from scones.local.emulator import emulator_endpoint
from scones.local.model_server import ModelServer
from tests.helpers.aws_environment import aws_environment_for

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_VAR = "SCONES_DATA_DIR"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "cifar100-bikes"
MODEL_URL_VAR = "SCONES_IT_MODEL_URL"
LAMBDA_MODEL_URL_VAR = "SCONES_IT_LAMBDA_MODEL_URL"
# For the tests that run `scones up` (its model server listens on the host's loopback): skipped where the Lambdas
# run in the LocalStack container of docker compose, which cannot reach it (the compose journey deploys with
# --model-url instead; docs/inner-loop.md says what applies there).
NEEDS_UP_ON_THE_HOST = pytest.mark.skipif(
    bool(os.environ.get(MODEL_URL_VAR)),
    reason="`scones up` starts its model server on the host's loopback, which the Lambdas in the LocalStack "
    "container (docker compose) cannot reach; the compose journey deploys with --model-url instead",
)
# "<docker host> <container>": the emulator runs in that container (tests/docker/run.py), its log is the container's.
EMULATOR_CONTAINER_VAR = "SCONES_IT_EMULATOR_CONTAINER"
# The project's default name: the compose model container serves it (SCONES_ENDPOINT_NAME unset), and the
# model server answers no other name on the SageMaker Runtime path.
ENDPOINT_NAME = DEFAULT_ENDPOINT_NAME
# Deliberately the workflow's default, not the suite model's chosen threshold: the suite's images are picked
# by score against a known threshold, and its 10-epoch model's chosen one varies or falls back. That
# model.json's threshold reaches the stack is tested by the demo (tests/integration/test_demo.py).
CONFIDENCE_THRESHOLD = DEFAULT_CONFIDENCE_THRESHOLD
# Test images are chosen well away from the threshold, so the workflow's verdict is not a coin toss.
CONFIDENT_SCORE = 0.97
UNSURE_SCORE = 0.80
CANDIDATES_PER_CLASS = 60
# A model good enough to be sure of some images and unsure of others in about 20 s on two busy cores.
QUICK_HYPERPARAMETERS = {
    "epochs": 10,
    "width": 8,
    "autoaugment": False,
    "label_smoothing": 0.0,
    "cutmix": 0.0,  # the suite's images are picked by this model's scores: it stays the model they were picked with
    "seed": 0,
    "ensemble_size": 1,  # one network and a validation split (its threshold, its drift baseline), as before
    "val_fraction": 0.1,
}


@pytest.fixture(scope="package")
def data_dir() -> Path:
    root = Path(os.environ.get(DATA_DIR_VAR) or DEFAULT_DATA_DIR)
    train = root / "train" if (root / "train").is_dir() else root
    missing = [name for name in CLASSES if not any((train / name).glob("*.png"))]
    if missing:
        pytest.fail(
            f"no {'/'.join(missing)} PNGs under {train}: set {DATA_DIR_VAR} to a folder holding "
            "train/bicycle/*.png and train/motorcycle/*.png"
        )
    return train


@pytest.fixture(scope="package")
def aws_endpoint() -> str:
    """The emulator's URL, with this session's environment pointing every AWS client at it."""
    with emulator_endpoint() as url, aws_environment_for(url):
        yield url


@pytest.fixture
def sfn(aws_endpoint):
    return boto3.client("stepfunctions")


@pytest.fixture
def s3(aws_endpoint):
    return boto3.client("s3")


@pytest.fixture(scope="package")
def model_dir(tmp_path_factory, data_dir) -> Path:
    model_dir = tmp_path_factory.mktemp("model")
    metrics = train_from_folder(data_dir, model_dir, {k: str(v) for k, v in QUICK_HYPERPARAMETERS.items()})
    logger.info("trained the test model: %s", metrics)
    return model_dir


@dataclass(frozen=True)
class RunningModelServer:
    url: str  # where the tests reach it
    lambda_url: str  # where the Lambdas reach it
    log_path: Path | None = None  # its access log; None when the server is external (not readable from here)
    capture_destination: str | None = None  # the folder it captures into; None when external
    pid: int | None = None  # the process, for reloads (SIGHUP); None when external
    variants_file: Path | None = None  # the variants it reads on SIGHUP (local_model/variants.py); None: external


@pytest.fixture(scope="package")
def model_server(request, tmp_path_factory) -> RunningModelServer:
    if external := os.environ.get(MODEL_URL_VAR):
        yield RunningModelServer(external, os.environ.get(LAMBDA_MODEL_URL_VAR) or external)
        return
    model_dir = request.getfixturevalue("model_dir")
    files = tmp_path_factory.mktemp("model-server")
    captures = str(files / "captures")
    variants_file = files / "variants.json"  # absent: one AllTraffic variant (tests/integration/test_rollout.py)
    server = ModelServer(
        model_dir,
        log_path=files / "server.log",
        capture_destination=captures,
        endpoint_name=ENDPOINT_NAME,
        env={VARIANTS_FILE_VAR: str(variants_file)},
    )
    with server:
        yield RunningModelServer(server.url, server.url, server.log_path, captures, server.pid, variants_file)


@pytest.fixture(scope="package")
def deploy_config(model_server) -> DeployConfig:
    return DeployConfig(
        stack_name=f"scones-it-{uuid.uuid4().hex[:8]}",
        model_endpoint_name=ENDPOINT_NAME,
        model_endpoint_url=model_server.lambda_url,
        confidence_threshold=CONFIDENCE_THRESHOLD,
    )


@pytest.fixture(scope="package")
def stack(aws_endpoint, deploy_config) -> dict[str, str]:
    """The deployed stack's outputs; the stack and everything it holds are deleted afterwards."""
    name = deploy_config.stack_name
    try:
        yield deploy_stack(deploy_config, AwsTarget(timeout_s=600))
    finally:
        teardown_stack(AwsTarget(timeout_s=600), name)
        assert stack_status(boto3.client("cloudformation"), name) is None, f"stack {name} was not deleted"


@dataclass(frozen=True)
class ScoredImage:
    path: Path
    scores: list[float]  # [p_bicycle, p_motorcycle] as the endpoint answers for it


@dataclass(frozen=True)
class ChosenImages:
    confident: dict[str, ScoredImage]  # by class name
    unsure: ScoredImage


@pytest.fixture(scope="package")
def endpoint_scores(aws_endpoint, model_server):
    """Score an image through the model server's SageMaker Runtime API, as the classifier Lambda does."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", model_server.url)
        runtime = boto3.client("sagemaker-runtime")
    return lambda image: invoke_endpoint(runtime, ENDPOINT_NAME, image)


@pytest.fixture(scope="package")
def test_images(data_dir, endpoint_scores) -> ChosenImages:
    """Real images the trained model is sure of, one per class, and one it is unsure of."""
    confident: dict[str, ScoredImage] = {}
    unsure = None
    seen = []
    for label_index, label in enumerate(CLASSES):
        for path in sorted((data_dir / label).glob("*.png"))[:CANDIDATES_PER_CLASS]:
            scored = ScoredImage(path, endpoint_scores(path.read_bytes()))
            seen.append(max(scored.scores))
            if label not in confident and scored.scores[label_index] >= CONFIDENT_SCORE:
                confident[label] = scored
            if unsure is None and max(scored.scores) < UNSURE_SCORE:
                unsure = scored
    if len(confident) < len(CLASSES) or unsure is None:
        pytest.fail(
            f"the test model scores no suitable images (confident: {sorted(confident)}, unsure: {unsure}); "
            f"top scores seen: {sorted(seen)[:: max(1, len(seen) // 10)]}"
        )
    return ChosenImages(confident, unsure)
