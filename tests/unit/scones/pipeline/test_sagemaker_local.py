"""SageMaker local mode without Docker: what the real run does not cover.

The real run (tests/docker/test_sagemaker_local_mode.py: the SDK, Docker Compose and our image) trains,
deploys, predicts, captures, deletes and names a failed job's reason. These tests check what it does not:
the compose config the SDK generates (image, /opt/ml mounts, hyperparameters.json as SageMaker encodes
it, the environment, with none of the user's own credentials), the validation and linked channels, the
failure paths (bad hyperparameters, a role that is not an ARN, an endpoint that never gets healthy, no
Docker or the wrong Compose), and that no AWS call is made on any of them. For the SDK to get that far,
a stand-in reads the file where the SDK starts `docker compose` and runs the service here: bind mounts
become symlinks in a scratch tree, `train` runs local_model.train's entrypoint, `serve` the model server.
The stand-in and the failure paths it makes reachable are one concern, hence one module of about 500 lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import botocore.client
import numpy as np
import pytest
import yaml
from PIL import Image

from local_model import settings, train
from local_model.classifier import CLASSES, pack_model_tar
from scones.local.model_server import ModelServer, ModelServerStartError
from scones.local.supervisor import free_port
from scones.pipeline import sagemaker_local
from tests.helpers.image_samples import make_model_dir

ROLE = "arn:aws:iam::000000000000:role/scones-local"  # a dummy: local mode never assumes it
TINY = {
    "epochs": 1,
    "width": 4,
    "batch_size": 8,
    "autoaugment": False,
    "bf16": False,
    "val_fraction": 0,
    "ensemble_size": 1,
}


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        sagemaker_local.IMAGE_URI_VAR,
        sagemaker_local.SERVING_PORT_VAR,
        "SCONES_OPT_ML",
        "SM_MODEL_DIR",
        "SM_CHANNEL_TRAIN",
        "SM_CHANNEL_VALIDATION",
        "SM_OUTPUT_FAILURE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    # Real-looking keys in the environment: local mode must neither use them nor copy them into containers.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERSOWNKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "users-own-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(autouse=True)
def outside_calls(monkeypatch):
    """Every AWS API call and telemetry request the SDK attempts; each one also fails, as it would offline."""
    sagemaker_local._import_sdk()  # first, so the SDK's import-time v2 notice stays silenced as in use
    calls = []

    def api_call(client, operation, params):
        calls.append(f"{client.meta.service_model.service_name}:{operation}")
        raise AssertionError(f"local mode called AWS: {operation}")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", api_call)
    from sagemaker.telemetry import telemetry_logging

    monkeypatch.setattr(telemetry_logging, "_requests_helper", lambda url, timeout: calls.append(url))
    return calls


# --- the docker compose stand-in -------------------------------------------------------------------


def service_of(compose_file: str) -> dict:
    content = yaml.safe_load(Path(compose_file).read_text())
    (service,) = content["services"].values()  # one instance, so one service
    return service


def mount_points(service: dict) -> dict[str, str]:
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}


def emulate_mounts(volumes: list[str], root: Path) -> Path:
    """`root` made to look like the container's file system: each mount point a symlink to its host folder."""
    for volume in sorted(volumes, key=lambda v: v.split(":")[1].count("/")):  # outer mounts first
        host, container = volume.split(":")[:2]
        Path(host).mkdir(parents=True, exist_ok=True)  # Docker creates a missing bind source, e.g. <root>/model
        link = root / container.lstrip("/")
        if link.exists() and link.resolve() == Path(host).resolve():
            continue  # e.g. /opt/ml/output/data, already inside the /opt/ml/output mount
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)  # the empty folder the SDK leaves under a nested mount point
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(host, target_is_directory=True)
    return root


def environment_of(service: dict, root: Path) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in service["environment"])
    return {k: str(root / v.lstrip("/")) if v.startswith("/opt/ml/") else v for k, v in env.items()}


class Compose:
    """Stands in for `docker compose up`: records each compose config and runs its service here."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.runs: list[dict] = []
        self.server: ModelServer | None = None
        self.stopped = 0

    def train(self, command: list[str]) -> int:
        service = service_of(command[command.index("-f") + 1])
        root = emulate_mounts(service["volumes"], self.scratch / f"train-{len(self.runs)}")
        config = root / "opt/ml/input/config"
        channel = Path(mount_points(service)["/opt/ml/input/data/train"])
        self.runs.append(
            {
                "service": service,
                "hyperparameters": json.loads((config / "hyperparameters.json").read_text()),
                "inputdataconfig": json.loads((config / "inputdataconfig.json").read_text()),
                "channel_files": sorted(str(p.relative_to(channel)) for p in channel.rglob("*") if p.is_file()),
            }
        )
        # Docker mounts links, not their targets: one pointing outside the mount would be broken in the container.
        assert not [p for p in channel.rglob("*") if p.is_symlink() and not p.resolve().is_relative_to(channel)]
        assert service["command"] == "train"
        return train.main(["--opt-ml", str(root / "opt/ml"), "--threads", "1"])  # what `train` runs in the image

    def serve(self, command: list[str]) -> None:
        service = service_of(command[command.index("-f") + 1])
        self.runs.append({"service": service})
        assert service["command"] == "serve"
        root = emulate_mounts(service["volumes"], self.scratch / f"serve-{len(self.runs)}")
        (published,) = service["ports"]
        host_port, container_port = published.split(":")
        assert int(container_port) == settings.DEFAULT_PORT
        env = environment_of(service, root)
        server = ModelServer(root / "opt/ml/model", port=int(host_port), env=env, extra_args=["--no-access-log"])
        with contextlib.suppress(ModelServerStartError):  # as with Docker, the SDK learns of it only from /ping
            self.server = server.start()

    def stop(self) -> None:
        self.stopped += 1
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def compose(monkeypatch, tmp_path):
    """Patches the SDK where it would shell out to Docker, and nowhere else."""
    from sagemaker.local import entities, image, local_session, utils

    stand_in = Compose(tmp_path / "containers")
    real_popen = subprocess.Popen

    class Popen:
        def __new__(cls, command, *args, **kwargs):
            if list(command[:2]) != ["docker", "compose"]:
                return real_popen(command, *args, **kwargs)
            return super().__new__(cls)

        def __init__(self, command, *args, **kwargs):
            self.args = command
            self.stdout = io.BytesIO(b"")
            self.returncode = stand_in.train(command)

        def poll(self):
            return self.returncode

    class HostingContainer:
        def __init__(self, command):
            self.command = command

        def start(self):
            stand_in.serve(self.command)

        def down(self):
            stand_in.stop()

        def join(self):
            pass

    monkeypatch.setattr(
        image._SageMakerContainer, "_get_compose_cmd_prefix", staticmethod(lambda: ["docker", "compose"])
    )
    monkeypatch.setattr(sagemaker_local, "check_docker", lambda: ["docker", "compose"])  # tested on its own below
    monkeypatch.setattr(image.subprocess, "Popen", Popen)
    monkeypatch.setattr(image, "_HostingContainer", HostingContainer)
    for module in (utils, entities, local_session):
        monkeypatch.setattr(module, "get_docker_host", lambda: "127.0.0.1")
    yield stand_in
    stand_in.stop()


def make_folder(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            pixels[..., label] = 255
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


# --- training ----------------------------------------------------------------------------------------


def test_training_job_compose_config_is_the_sagemaker_contract(compose, outside_calls, tmp_path):
    data = make_folder(tmp_path / "train")

    model_tar = sagemaker_local.train(data, tmp_path / "out", role=ROLE, hyperparameters=TINY)

    (run,) = compose.runs
    service = run["service"]
    assert service["image"] == sagemaker_local.DEFAULT_IMAGE_URI == "scones-model:latest"
    mounts = mount_points(service)
    assert {"/opt/ml/input", "/opt/ml/output", "/opt/ml/model", "/opt/ml/input/data/train"} <= set(mounts)
    assert Path(mounts["/opt/ml/input/data/train"]) == data.resolve()
    # What SageMaker writes: every value a string, booleans as JSON.
    assert run["hyperparameters"] == {
        "epochs": "1",
        "width": "4",
        "batch_size": "8",
        "autoaugment": "false",
        "bf16": "false",
        "val_fraction": "0",
        "ensemble_size": "1",
    }
    assert set(run["inputdataconfig"]) == {"train"}
    env = dict(item.split("=", 1) for item in service["environment"])
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["TRAINING_JOB_NAME"].startswith(sagemaker_local.TRAINING_JOB_BASE_NAME)
    assert env["AWS_ACCESS_KEY_ID"] != "AKIAUSERSOWNKEY" and "users-own-secret" not in env.values()
    assert model_tar == (tmp_path / "out" / "model.tar.gz").resolve()
    assert len(list(data.rglob("*.png"))) == 2 * 4  # the SDK's clean-up left the mounted data alone
    assert outside_calls == []


def test_validation_channel_is_mounted_when_given(compose, tmp_path):
    data = make_folder(tmp_path / "train")
    validation = make_folder(tmp_path / "validation", per_class=2)

    sagemaker_local.train(data, tmp_path / "out", role=ROLE, hyperparameters=TINY, validation_dir=validation)

    (run,) = compose.runs
    assert Path(mount_points(run["service"])["/opt/ml/input/data/validation"]) == validation.resolve()
    assert set(run["inputdataconfig"]) == {"train", "validation"}


def test_linked_channel_is_mounted_as_real_files(compose, tmp_path):
    # `scones stage --data-dir` links images; inside a container those links would point nowhere.
    source = make_folder(tmp_path / "images")
    linked = tmp_path / "staged" / "train"
    for image in source.rglob("*.png"):
        (linked / image.parent.name).mkdir(parents=True, exist_ok=True)
        (linked / image.parent.name / image.name).symlink_to(image)

    sagemaker_local.train(linked, tmp_path / "out", role=ROLE, hyperparameters=TINY)

    (run,) = compose.runs
    mounted = Path(mount_points(run["service"])["/opt/ml/input/data/train"])
    assert mounted != linked.resolve()
    assert run["channel_files"] == sorted(str(p.relative_to(source)) for p in source.rglob("*.png"))
    assert not mounted.exists()  # the copy is removed once the job is over
    assert all(p.is_symlink() for p in linked.rglob("*.png"))  # and the staged links are left as they were


def test_bad_hyperparameters_fail_before_any_container_starts(compose, tmp_path):
    with pytest.raises(train.HyperparameterError, match="epoch"):
        sagemaker_local.train(tmp_path, tmp_path / "out", role=ROLE, hyperparameters={"epoch": 3})
    assert compose.runs == []


@pytest.mark.parametrize("role", ["scones-local", "SageMakerRole", ""])
def test_role_must_be_an_arn_or_the_sdk_calls_iam(compose, outside_calls, tmp_path, role):
    with pytest.raises(sagemaker_local.RoleArnError):
        sagemaker_local.train(make_folder(tmp_path / "train"), tmp_path / "out", role=role, hyperparameters=TINY)
    assert compose.runs == [] and outside_calls == []


# --- serving -----------------------------------------------------------------------------------------


@pytest.fixture
def model_tar(tmp_path):
    return pack_model_tar(make_model_dir(tmp_path / "model"), tmp_path / "model" / "model.tar.gz")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_endpoint_compose_config_serves_a_copy_of_the_model(compose, outside_calls, model_tar, tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv(sagemaker_local.SERVING_PORT_VAR, str(port))
    session = sagemaker_local.create_session()
    beside_original = sorted(p.name for p in model_tar.parent.iterdir())

    endpoint = sagemaker_local.deploy(
        model_tar, role=ROLE, endpoint_name="scones-local-test", workdir=tmp_path / "endpoints", session=session
    )
    try:
        (run,) = compose.runs
        service = run["service"]
        assert service["image"] == sagemaker_local.DEFAULT_IMAGE_URI
        assert service["ports"] == [f"{port}:{settings.DEFAULT_PORT}"]
        assert mount_points(service) == {settings.DEFAULT_MODEL_DIR: str(endpoint.model_dir)}
        env = dict(item.split("=", 1) for item in service["environment"])
        assert env[settings.ENDPOINT_NAME_VAR] == "scones-local-test"
        assert env[settings.CAPTURE_DESTINATION_VAR] == sagemaker_local.CONTAINER_CAPTURE_DIR
        assert "AKIAUSERSOWNKEY" not in env.values()
        # The SDK unpacked the copy in a folder of its own, leaving the original's folder untouched.
        assert (endpoint.model_dir / "model.json").is_file() and (endpoint.model_dir / "model.tar.gz").is_file()
        assert sorted(p.name for p in model_tar.parent.iterdir()) == beside_original
        assert endpoint.url == f"http://127.0.0.1:{port}"
    finally:
        endpoint.delete()
    assert outside_calls == []


def test_endpoint_that_never_gets_healthy_is_stopped_and_named(compose, tmp_path, monkeypatch):
    from sagemaker.local import entities

    monkeypatch.setattr(entities, "HEALTH_CHECK_TIMEOUT_LIMIT", 5)  # the SDK gives up after one /ping, not 120 s
    monkeypatch.setenv(sagemaker_local.SERVING_PORT_VAR, str(free_port()))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("not a model")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(broken / "model.json", arcname="model.json")

    with pytest.raises(sagemaker_local.EndpointStartError, match="scones-broken did not answer /ping"):
        sagemaker_local.deploy(
            tmp_path / "model.tar.gz", role=ROLE, endpoint_name="scones-broken", workdir=tmp_path / "endpoints"
        )
    assert compose.stopped == 1  # the container's thread would otherwise outlive the error


def test_deploy_without_capture_sets_no_destination(compose, model_tar, tmp_path, monkeypatch):
    monkeypatch.setenv(sagemaker_local.SERVING_PORT_VAR, str(free_port()))
    endpoint = sagemaker_local.deploy(
        model_tar, role=ROLE, endpoint_name="scones-no-capture", workdir=tmp_path / "endpoints", capture=False
    )
    endpoint.delete()
    env = dict(item.split("=", 1) for item in compose.runs[0]["service"]["environment"])
    assert settings.CAPTURE_DESTINATION_VAR not in env and endpoint.capture_dir is None


def test_local_mode_still_refuses_data_capture_config(compose, model_tar, tmp_path):
    # Why capture is configured through the container's environment: LocalSagemakerClient.create_endpoint_config
    # takes no DataCaptureConfig. If this starts passing, the SDK supports it and deploy() should use it.
    from sagemaker.model import Model
    from sagemaker.model_monitor import DataCaptureConfig

    session = sagemaker_local.create_session()
    model = Model(image_uri="scones-model:latest", model_data=model_tar.as_uri(), role=ROLE, sagemaker_session=session)
    capture = DataCaptureConfig(
        enable_capture=True, destination_s3_uri="s3://bucket/capture", sagemaker_session=session
    )
    with pytest.raises(TypeError, match="DataCaptureConfig"):
        model.deploy(1, "local", endpoint_name="scones-capture-config", data_capture_config=capture)
    assert compose.runs == []


# --- settings and session ----------------------------------------------------------------------------


def test_settings_come_from_the_environment_at_call_time():
    assert sagemaker_local.read_settings({}) == sagemaker_local.LocalModeSettings("scones-model:latest", 8080, None)
    custom = sagemaker_local.read_settings(
        {"SCONES_MODEL_IMAGE": "scones-model:dev", "SCONES_SAGEMAKER_LOCAL_PORT": "9090", "AWS_DEFAULT_REGION": "x-1"}
    )
    assert custom == sagemaker_local.LocalModeSettings("scones-model:dev", 9090, "x-1")
    with pytest.raises(sagemaker_local.SageMakerLocalError, match="SCONES_SAGEMAKER_LOCAL_PORT"):
        sagemaker_local.read_settings({"SCONES_SAGEMAKER_LOCAL_PORT": "http"})


def test_session_makes_no_aws_calls_and_keeps_outputs_on_disk(outside_calls):
    session = sagemaker_local.create_session()
    assert session.local_mode and session.boto_region_name == "eu-west-1"
    assert session.config == {"local": {"local_code": True, "serving_port": 8080}}
    credentials = session.boto_session.get_credentials()
    assert credentials.access_key == "local-mode" != os.environ["AWS_ACCESS_KEY_ID"]
    assert outside_calls == []


def test_session_without_a_region_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(sagemaker_local.RegionNotSetError, match="AWS_REGION"):
        sagemaker_local.create_session()


# --- Docker checks: a fake docker CLI on PATH, run by the SDK's own detection -----------------------

DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


def fake_docker(bin_dir: Path, *, compose_version: str | None, daemon: bool, standalone: bool = False) -> Path:
    """A `docker` that answers the three commands local mode's checks run, like the real CLI does."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    plugin = bin_dir / "cli-plugins" / "docker-compose"
    plugins = [{"Name": "compose", "Version": compose_version, "Path": str(plugin)}] if compose_version else []
    compose_answer = (
        f'echo "Docker Compose version {compose_version}"; exit 0'
        if compose_version
        else "echo 'docker: unknown command: docker compose' >&2; exit 1"
    )
    daemon_answer = "echo 28.2.2; exit 0" if daemon else f"echo '{DAEMON_DOWN}' >&2; exit 1"
    script = f"""#!/bin/sh
case "$1 $2 $3" in
  "compose version"*) {compose_answer} ;;
  "info --format {{{{json .ClientInfo.Plugins}}}}") echo '{json.dumps(plugins)}'; exit 0 ;;
  "info --format {{{{.ServerVersion}}}}") {daemon_answer} ;;
esac
echo "unexpected: $*" >&2; exit 2
"""
    (bin_dir / "docker").write_text(script)
    (bin_dir / "docker").chmod(0o755)
    if standalone:
        (bin_dir / "docker-compose").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "docker-compose").chmod(0o755)
    return bin_dir


@pytest.fixture
def path_with(monkeypatch):
    def use(bin_dir: Path) -> None:
        monkeypatch.setenv("PATH", str(bin_dir))  # nothing else: no real docker or docker-compose leaks in

    return use


def test_compose_v2_and_a_daemon_pass(tmp_path, path_with):
    path_with(fake_docker(tmp_path / "bin", compose_version="v2.39.1", daemon=True))
    assert sagemaker_local.check_docker() == ["docker", "compose"]


def test_no_daemon_fails_at_once_instead_of_after_the_compose_run(tmp_path, path_with):
    path_with(fake_docker(tmp_path / "bin", compose_version="v2.39.1", daemon=False))
    with pytest.raises(sagemaker_local.DockerDaemonUnavailableError, match="Cannot connect to the Docker daemon"):
        sagemaker_local.check_docker()


def test_docker_without_the_compose_plugin_is_named(tmp_path, path_with):
    # This machine's case: the docker CLI answers, but has no compose plugin and there is no docker-compose.
    path_with(fake_docker(tmp_path / "bin", compose_version=None, daemon=False))
    with pytest.raises(sagemaker_local.DockerComposeNotFoundError, match="Docker Compose is not installed"):
        sagemaker_local.check_docker()


def test_compose_v5_is_refused_by_the_sdk_and_the_fix_is_given(tmp_path, path_with):
    bin_dir = fake_docker(tmp_path / "bin", compose_version="v5.0.0", daemon=True)
    path_with(bin_dir)
    with pytest.raises(sagemaker_local.DockerComposeNotFoundError) as error:
        sagemaker_local.check_docker()
    plugin = bin_dir / "cli-plugins" / "docker-compose"
    assert "v5.0.0" in str(error.value) and f"ln -s {plugin} ~/.local/bin/docker-compose" in str(error.value)
    # The fix works: with a docker-compose on PATH the SDK falls back to it.
    fake_docker(bin_dir, compose_version="v5.0.0", daemon=True, standalone=True)
    assert sagemaker_local.check_docker() == ["docker-compose"]


def test_no_docker_cli_is_named(tmp_path, path_with):
    (tmp_path / "empty").mkdir()
    path_with(tmp_path / "empty")
    with pytest.raises(sagemaker_local.DockerNotFoundError, match="docker CLI"):
        sagemaker_local.check_docker()


def test_model_tar_must_exist(compose, tmp_path):
    with pytest.raises(sagemaker_local.SageMakerLocalError, match=r"model\.tar\.gz"):
        sagemaker_local.deploy(tmp_path / "missing.tar.gz", role=ROLE, endpoint_name="x", workdir=tmp_path)


def test_failure_reason_is_read_from_output_tar(tmp_path):
    failure = tmp_path / "failure"
    failure.write_text("HyperparameterError: nope\n\nTraceback ...")
    with tarfile.open(tmp_path / "output.tar.gz", "w:gz") as tar:
        tar.add(failure, arcname="failure")
    assert sagemaker_local._failure_reason(tmp_path / "output.tar.gz") == "HyperparameterError: nope"
    assert sagemaker_local._failure_reason(tmp_path / "absent.tar.gz") is None
