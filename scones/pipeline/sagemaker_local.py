"""Train and serve the `scones-model` image with the SageMaker Python SDK's local mode (`instance_type="local"`).

The SDK writes a docker-compose.yaml per job and runs it with `docker compose`: `train` with the channels,
hyperparameters.json and /opt/ml/model mounted, then `serve` with model.tar.gz unpacked into /opt/ml/model,
exactly as SageMaker runs the image on AWS. Needs Docker with the Compose plugin and the image built
(`docker compose build model`); the `sagemaker-local` extra installs the SDK. Traps and the reasons for
the choices below: local_model/SAGEMAKER_LOCAL.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.defaults import DEFAULT_LOCAL_IMAGE
from local_model.settings import CAPTURE_DESTINATION_VAR, DEFAULT_PORT, ENDPOINT_NAME_VAR

logger = logging.getLogger(__name__)

IMAGE_URI_VAR = "SCONES_MODEL_IMAGE"
DEFAULT_IMAGE_URI = DEFAULT_LOCAL_IMAGE  # what `docker compose build model` tags (docker-compose.yml)
SERVING_PORT_VAR = "SCONES_SAGEMAKER_LOCAL_PORT"
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
LOCAL_INSTANCE_TYPE = "local"
TRAINING_JOB_BASE_NAME = "scones-train"
# Local mode runs nothing on AWS, so it gets credentials that AWS would refuse: a stray AWS call fails
# instead of reaching the user's account, and no real keys are copied into the containers' environment.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local-mode", "aws_secret_access_key": "local-mode"}
# Handed to LocalSession instead of the SDK's config files: telemetry off, because every local-mode API
# call would otherwise send sts:GetCallerIdentity and an HTTPS request to an AWS-hosted telemetry URL.
SDK_DEFAULTS = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# Where the container writes captured inferences: local mode mounts only /opt/ml/model from the host
# (read-write), and it accepts no DataCaptureConfig, so captures go to a folder in the model mount.
CONTAINER_CAPTURE_DIR = "/opt/ml/model/data-capture"
CAPTURE_FOLDER = "data-capture"


class SageMakerLocalError(RuntimeError):
    """SageMaker local mode cannot run here, or was asked for something it cannot do; the message says why."""


class DockerNotFoundError(SageMakerLocalError):
    """The docker CLI is not on PATH."""


class DockerComposeNotFoundError(SageMakerLocalError):
    """The SDK finds no Docker Compose it accepts."""


class DockerDaemonUnavailableError(SageMakerLocalError):
    """The docker CLI cannot reach a Docker daemon."""


class RegionNotSetError(SageMakerLocalError):
    """No AWS region is configured; LocalSession refuses to start without one."""


class RoleArnError(SageMakerLocalError):
    """The role is not an ARN, so the SDK would call IAM to expand it."""


class TrainingJobError(SageMakerLocalError):
    """The training container failed; the message is the reason it wrote to /opt/ml/output/failure."""


class EndpointStartError(SageMakerLocalError):
    """The serving container did not answer /ping with 200 in time."""


@dataclass(frozen=True)
class LocalModeSettings:
    image_uri: str
    serving_port: int
    region: str | None


def read_settings(environ: Mapping[str, str] | None = None) -> LocalModeSettings:
    """Local-mode settings from `environ` (default: the process environment), read now."""
    env = os.environ if environ is None else environ
    raw_port = env.get(SERVING_PORT_VAR, "").strip() or str(DEFAULT_PORT)
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise SageMakerLocalError(f"{SERVING_PORT_VAR}={raw_port!r} is not a TCP port")
    return LocalModeSettings(
        image_uri=env.get(IMAGE_URI_VAR, "").strip() or DEFAULT_IMAGE_URI,
        serving_port=int(raw_port),
        region=next((env[name].strip() for name in REGION_VARS if env.get(name, "").strip()), None),
    )


def _import_sdk():
    # sagemaker[local] exists only in SDK 2.x, which warns about v3 on import and on each feature's first use;
    # 2.x is chosen on purpose (README). Silenced through warnings filters, not the SDK's environment switch.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import sagemaker
        from sagemaker.deprecations import SageMakerV2DeprecationWarning
    except ImportError as e:
        raise SageMakerLocalError("the SageMaker SDK is not installed: pip install -e '.[sagemaker-local]'") from e
    warnings.filterwarnings("ignore", category=SageMakerV2DeprecationWarning)
    return sagemaker


def check_docker() -> list[str]:
    """The compose command local mode will run; raises, with the fix, where local mode would fail late.

    Without a daemon the SDK would fail only after writing its compose file ("Process exited with code: 1")
    or, when serving, after polling /ping for two minutes.
    """
    if shutil.which("docker") is None:
        raise DockerNotFoundError("the docker CLI is not on PATH: install Docker (https://docs.docker.com/get-docker/)")
    _import_sdk()
    from sagemaker.local.image import _SageMakerContainer

    try:
        compose = _SageMakerContainer._get_compose_cmd_prefix()
    except ImportError as e:
        raise DockerComposeNotFoundError(_compose_advice()) from e
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        raise DockerDaemonUnavailableError(f"no Docker daemon: {reason} Start Docker and try again.")
    return compose


def _compose_advice() -> str:
    """Why the SDK rejected Docker Compose, and the command that fixes it."""
    plugins = subprocess.run(
        ["docker", "info", "--format", "{{json .ClientInfo.Plugins}}"], capture_output=True, text=True, timeout=60
    )
    try:
        found = [p for p in json.loads(plugins.stdout or "[]") if p.get("Name") == "compose"]
    except json.JSONDecodeError:
        found = []
    if not found:
        return "Docker Compose is not installed: install the Compose plugin (https://docs.docker.com/compose/install/)"
    # SDK 2.x accepts `docker compose` only when its version string contains "v2" (fixed only in the 3.x line,
    # aws/sagemaker-python-sdk#5739); for Compose v5 it falls back to a `docker-compose` on PATH.
    version, path = found[0].get("Version", "?"), found[0].get("Path", "<compose plugin>")
    return (
        f"Docker Compose {version} is installed, but SageMaker SDK 2.x recognises only Compose v2 through "
        f"`docker compose`; put the plugin on PATH as docker-compose: ln -s {path} ~/.local/bin/docker-compose"
    )


def create_session(settings: LocalModeSettings | None = None):
    """A LocalSession that makes no AWS calls: dummy credentials, no telemetry, file:// inputs and outputs. The
    SDK wants a boto3 session of its own, not cloud.aws.AwsTarget's clients: this is its one session."""
    settings = settings or read_settings()
    _import_sdk()
    import boto3
    from sagemaker.local import LocalSession

    boto_session = boto3.Session(region_name=settings.region, **LOCAL_CREDENTIALS)
    if boto_session.region_name is None:
        raise RegionNotSetError(
            "no AWS region is set: export AWS_REGION (any region; local mode makes no AWS calls, but the SDK needs one)"
        )
    session = LocalSession(boto_session=boto_session, sagemaker_config=SDK_DEFAULTS)
    # Replaces ~/.sagemaker/config.yaml. local_code: code and outputs stay on disk; without it any job left
    # without an explicit file:// path falls back to the default bucket (sts:GetCallerIdentity, s3:CreateBucket).
    session.config = {"local": {"local_code": True, "serving_port": settings.serving_port}}
    return session


def _check_role(role: str) -> str:
    # The SDK expands anything without a "/" through iam:GetRole, even in local mode.
    if not role.startswith("arn:") or "/" not in role:
        raise RoleArnError(f"role {role!r} must be a role ARN (arn:<partition>:iam::<account>:role/<name>)")
    return role


def sagemaker_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """The strings SageMaker writes to hyperparameters.json, checked against the training code's own parser."""
    from local_model.train import Hyperparameters

    # The SDK's own rule (strings as they are, everything else as JSON), so `true`, not `True`.
    strings = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}
    Hyperparameters.from_dict(strings)  # an unknown name or a bad value fails here, not minutes later in a container
    return strings


def train(
    train_dir: Path,
    output_dir: Path,
    *,
    role: str,
    hyperparameters: Mapping[str, Any] | None = None,
    validation_dir: Path | None = None,
    settings: LocalModeSettings | None = None,
    session=None,
) -> Path:
    """Run one training job in a local container; returns the model.tar.gz it leaves in `output_dir`."""
    settings = settings or read_settings()
    role = _check_role(role)
    strings = sagemaker_hyperparameters(hyperparameters or {})
    check_docker()
    from sagemaker.estimator import Estimator

    session = session or create_session(settings)
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("model.tar.gz", "output.tar.gz"):  # a failed run must not leave the last run's model in view
        (output_dir / stale).unlink(missing_ok=True)
    channels = {"train": train_dir, "validation": validation_dir}
    scratch = Path(tempfile.mkdtemp(prefix="scones-channels-"))
    try:
        inputs = {name: _mountable(Path(d), scratch / name).as_uri() for name, d in channels.items() if d is not None}
        estimator = Estimator(
            image_uri=settings.image_uri,
            role=role,
            instance_count=1,
            instance_type=LOCAL_INSTANCE_TYPE,
            hyperparameters=strings,
            output_path=output_dir.as_uri(),
            base_job_name=TRAINING_JOB_BASE_NAME,
            sagemaker_session=session,
        )
        logger.info("training in local mode: image %s, channels %s", settings.image_uri, inputs)
        estimator.fit(inputs, wait=True)
    except RuntimeError as e:
        # The SDK only says "Process exited with code: 1"; the container said why in output.tar.gz.
        reason = _failure_reason(output_dir / "output.tar.gz")
        if reason is None:
            raise
        raise TrainingJobError(f"training failed: {reason}") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Path(estimator.model_data.removeprefix("file://"))


def _mountable(channel: Path, scratch: Path) -> Path:
    """`channel`, or a copy with its links resolved if any points outside it: a bind mount carries links, not
    their targets, and `scones stage --data-dir` links the images instead of copying them."""
    channel = channel.resolve()
    if not channel.is_dir():
        raise SageMakerLocalError(f"training channel {channel} is not a folder")
    if not any(p.is_symlink() and not p.resolve().is_relative_to(channel) for p in channel.rglob("*")):
        return channel
    shutil.copytree(channel, scratch, symlinks=False)
    return scratch


def _failure_reason(output_tar: Path) -> str | None:
    """The first line of /opt/ml/output/failure, which local mode packs into output.tar.gz."""
    if not output_tar.is_file():
        return None
    with tarfile.open(output_tar) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == "failure"), None)
        if member is None:
            return None
        text = tar.extractfile(member).read().decode(errors="replace").strip()
    return text.splitlines()[0] if text else None


@dataclass
class LocalEndpoint:
    """A model served by local mode: `url` stands in for SageMaker Runtime on this host, until `delete()`."""

    name: str
    url: str
    model_dir: Path  # mounted as /opt/ml/model
    capture_dir: Path | None  # captured inferences, in SageMaker's layout, when capture is on
    predictor: Any
    model: Any

    def delete(self) -> None:
        """Stop the container and forget the endpoint; captured files stay in `capture_dir`."""
        self.predictor.delete_endpoint(delete_endpoint_config=True)
        self.model.delete_model()


def deploy(
    model_tar: Path,
    *,
    role: str,
    endpoint_name: str,
    workdir: Path,
    capture: bool = True,
    settings: LocalModeSettings | None = None,
    session=None,
) -> LocalEndpoint:
    """Serve `model_tar` from a local container named `endpoint_name`; blocks until /ping answers 200."""
    settings = settings or read_settings()
    role = _check_role(role)
    model_tar = Path(model_tar).resolve()
    if not model_tar.is_file() or not model_tar.name.endswith(".tar.gz"):
        raise SageMakerLocalError(f"{model_tar} is not a model.tar.gz; train first")
    check_docker()
    from sagemaker.local.utils import get_docker_host
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor

    session = session or create_session(settings)
    # The SDK unpacks model.tar.gz beside itself and mounts that whole folder: give it a fresh one of its own.
    Path(workdir).mkdir(parents=True, exist_ok=True)
    model_dir = Path(tempfile.mkdtemp(prefix=f"{endpoint_name}-", dir=workdir)).resolve()
    staged = shutil.copy2(model_tar, model_dir / "model.tar.gz")
    env = {ENDPOINT_NAME_VAR: endpoint_name}  # names the captures of /invocations, the path local mode calls
    if capture:
        env[CAPTURE_DESTINATION_VAR] = CONTAINER_CAPTURE_DIR
    model = Model(
        image_uri=settings.image_uri,
        model_data=Path(staged).as_uri(),
        role=role,
        env=env,
        predictor_cls=Predictor,
        sagemaker_session=session,
    )
    logger.info("starting local endpoint %s from %s (image %s)", endpoint_name, model_tar, settings.image_uri)
    try:
        # wait=False: local create_endpoint already blocks until /ping answers 200; waiting would add the
        # SDK's fixed 30 s sleep before its first status poll.
        predictor = model.deploy(
            initial_instance_count=1, instance_type=LOCAL_INSTANCE_TYPE, endpoint_name=endpoint_name, wait=False
        )
    except RuntimeError as e:
        # Stop the container: its thread would otherwise keep this process alive after the error.
        session.delete_endpoint(endpoint_name)
        session.delete_endpoint_config(endpoint_name)
        raise EndpointStartError(
            f"endpoint {endpoint_name} did not answer /ping: {e}. The container's log: docker logs $(docker ps -alq)"
        ) from e
    port = session.config["local"]["serving_port"]
    return LocalEndpoint(
        name=endpoint_name,
        url=f"http://{get_docker_host()}:{port}",
        model_dir=model_dir,
        capture_dir=model_dir / CAPTURE_FOLDER if capture else None,
        predictor=predictor,
        model=model,
    )
