"""Run a command against the project's docker-compose.yml brought up for real: `python tests/docker/run.py -- CMD...`.

The README's compose journey, step by step:
1. A Docker engine (docker_engine.py: DOCKER_HOST's, else a dockerd of our own on a temporary socket) and
   Docker Compose v2 as its CLI plugin.
2. The model trained on the host by `scones train` (the integration suite's quick recipe), which writes
   WORKDIR/model/model.tar.gz and nothing else into the folder the model service mounts.
3. `docker compose up -d --build --wait` of docker-compose.yml: Compose builds `scones-model` itself, with the
   offline build's base image and wheel folder passed as the file's build arguments
   (SCONES_MODEL_BASE_IMAGE, SCONES_MODEL_PIP_SOURCE), LOCALSTACK_IMAGE set to the LocalStack stand-in
   (docker_images.py), and waits until both services are healthy.
4. CMD with AWS_ENDPOINT_URL=http://127.0.0.1:4566, dummy credentials, SCONES_IT_MODEL_URL (the model
   server as the tests reach it) and SCONES_IT_LAMBDA_MODEL_URL (as the Lambdas reach it: http://model:8080).
5. `docker compose down`, the engine stopped; exits with CMD's exit code.

Where no engine can be had it prints why and exits 0 (skipped), or 1 when Docker is required: under CI=true
or SCONES_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a script: the repository root, for tests.helpers

import docker_engine
import docker_images
from docker_engine import DockerUnavailableError, log
from docker_images import Docker, ImageBuildError

from tests.helpers.wrapped_command import wrapped_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROJECT = "scones"
SERVICES = ("localstack", "model")
LOCALSTACK_URL = "http://127.0.0.1:4566"  # the compose file publishes both on loopback
LOCALSTACK_CONTAINER = "localstack-main"  # the compose file's container_name
MODEL_URL = "http://127.0.0.1:8080"
LAMBDA_MODEL_URL = "http://model:8080"  # the service name, on the network `scones`
HEALTHY_TIMEOUT_S = 300
DATA_DIR_VAR = "SCONES_DATA_DIR"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "cifar100-bikes"


def docker_required() -> bool:
    value = os.environ.get("SCONES_REQUIRE_DOCKER", os.environ.get("CI", ""))
    return value.strip().lower() in ("1", "true", "yes")


def train_on_the_host(train_dir: Path, workdir: Path) -> Path:
    """`scones train` with the integration suite's quick recipe (it picks its test images for whatever model
    serves); returns the folder holding model.tar.gz, as the README's journey leaves it."""
    conftest = docker_images.load_module(ROOT / "tests" / "integration" / "conftest.py", "integration_conftest")
    overrides = [f"--set={key}={value}" for key, value in conftest.QUICK_HYPERPARAMETERS.items()]
    command = ["scones", "train", "--data-dir", str(train_dir), "--workdir", str(workdir), *overrides]
    started = time.monotonic()
    log(f"training the quick model on the host: {' '.join(command)}")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageBuildError(f"scones train failed: {(result.stdout + result.stderr)[-3000:]}")
    model_dir = workdir / "model"
    contents = sorted(path.name for path in model_dir.iterdir())
    log(f"trained in {time.monotonic() - started:.0f} s; {model_dir} holds {contents}")
    return model_dir


def compose_env(docker: Docker, model_dir: Path, build: docker_images.OfflineBuild) -> dict[str, str]:
    env = {
        **docker.env,
        "LOCALSTACK_IMAGE": docker_images.LOCALSTACK_IMAGE,
        "SCONES_MODEL_HOST_DIR": str(model_dir),
        "SCONES_MODEL_BASE_IMAGE": build.base_image,
        "SCONES_MODEL_PIP_SOURCE": build.pip_source,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    if docker.host.startswith("unix://"):
        env["DOCKER_SOCKET"] = docker.host.removeprefix("unix://")  # the compose file mounts it into LocalStack
    return env


def compose(env: dict[str, str], *args: str, check: bool = True, show: bool = False) -> subprocess.CompletedProcess:
    """`docker compose ARGS` in the repository root, as a user runs it there (the file names the project)."""
    command = ["docker", "compose", *args]
    if show:
        log(f"$ {' '.join(command)}")
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ImageBuildError(f"docker compose {' '.join(args)} failed: {(result.stdout + result.stderr)[-3000:]}")
    return result


def service_states(docker: Docker, env: dict[str, str]) -> dict[str, str]:
    """Each service's "<status> <health>" as Docker reports it (e.g. "running healthy")."""
    states = {}
    for service in SERVICES:
        ids = compose(env, "ps", "-q", service).stdout.split()
        inspect = docker.run("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", *ids, check=False)
        states[service] = inspect.stdout.strip() or "missing"
    return states


@contextlib.contextmanager
def compose_up(docker: Docker, model_dir: Path, build: docker_images.OfflineBuild) -> Iterator[float]:
    """The README's `docker compose up -d --build --wait` (yields the seconds it took); down afterwards."""
    env = compose_env(docker, model_dir, build)
    started = time.monotonic()
    try:
        up = compose(env, "up", "--detach", "--build", "--wait", "--wait-timeout", str(HEALTHY_TIMEOUT_S), show=True,
                     check=False)  # fmt: skip
        states = service_states(docker, env)
        if up.returncode != 0 or any(state != "running healthy" for state in states.values()):
            logs = compose(env, "logs", "--no-color", "--tail", "40", check=False)
            raise ImageBuildError(
                f"docker compose up --wait failed ({states}): {(up.stdout + up.stderr)[-2000:]}\n"
                f"{(logs.stdout + logs.stderr)[-4000:]}"
            )
        log(f"services: {states}")
        yield time.monotonic() - started
    finally:
        compose(env, "down", "--volumes", "--remove-orphans", check=False, show=True)


def command_env(docker: Docker) -> dict[str, str]:
    """As tests/localstack/run.py gives its command (endpoint, dummy credentials, region), plus the model server
    and where the emulator's log is: the LocalStack container's, on this engine (tests/integration/conftest.py)."""
    env = docker_images.localstack_support().command_env(LOCALSTACK_URL)
    env.update(SCONES_IT_MODEL_URL=MODEL_URL, SCONES_IT_LAMBDA_MODEL_URL=LAMBDA_MODEL_URL)
    env["SCONES_IT_EMULATOR_CONTAINER"] = f"{docker.host} {LOCALSTACK_CONTAINER}"
    return env


def run(command: list[str]) -> int:
    data_dir = Path(os.environ.get(DATA_DIR_VAR) or DEFAULT_DATA_DIR)
    train_dir = data_dir / "train" if (data_dir / "train").is_dir() else data_dir
    with docker_engine.docker_engine() as host, tempfile.TemporaryDirectory(prefix="scones-compose-") as scratch:
        docker = Docker(host)
        build = docker_images.offline_build(docker)
        docker_images.localstack_image(docker)
        model_dir = train_on_the_host(train_dir, Path(scratch) / "workdir")
        with compose_up(docker, model_dir, build) as took:
            log(f"docker compose up: localstack and model healthy in {took:.0f} s; running {' '.join(command)}")
            return subprocess.run(command, env=command_env(docker), cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    command = wrapped_command(__doc__.splitlines()[0], argv)  # from here a CI time-out unwinds: compose down
    try:
        return run(command)
    except DockerUnavailableError as e:
        if docker_required():
            log(f"FAILED: Docker is required here (CI=true or SCONES_REQUIRE_DOCKER=1) but unavailable: {e}")
            return 1
        log(f"skipped: no Docker engine can be had here: {e}")
        return 0
    except ImageBuildError as e:
        log(f"FAILED: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; services stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
