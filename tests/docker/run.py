"""Run a command against the project's docker-compose.yml brought up for real: `python tests/docker/run.py -- CMD...`.

1. A Docker engine (docker_engine.py: DOCKER_HOST's, else a dockerd of our own on a temporary socket).
2. The images (docker_images.py): `scones-model` from local_model/Dockerfile and the LocalStack stand-in,
   both built offline, reused while their inputs are unchanged.
3. The integration suite's quick model, trained by the image itself (`docker run scones-model train`).
4. `docker-compose up -d` of docker-compose.yml with LOCALSTACK_IMAGE set to the stand-in and the model
   folder as SCONES_MODEL_HOST_DIR; waits until both services report healthy.
5. CMD with AWS_ENDPOINT_URL=http://127.0.0.1:4566, dummy credentials, SCONES_IT_MODEL_URL (the model
   server as the tests reach it) and SCONES_IT_LAMBDA_MODEL_URL (as the Lambdas reach it: http://model:8080).
6. `docker-compose down`, the engine stopped; exits with CMD's exit code.

Where no engine can be had it prints why and exits 0 (skipped), or 1 when Docker is required: under CI=true
or SCONES_REQUIRE_DOCKER=1. Compose v1 (`docker-compose` 1.29, Debian's) is what can be installed here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the wrappers' shared command line

import docker_engine
import docker_images
from docker_engine import DockerUnavailableError, log
from docker_images import Docker, ImageBuildError
from wrapped_command import wrapped_command

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


def quick_hyperparameters() -> dict[str, str]:
    """The integration suite's own quick recipe (it picks its test images for that model), as SageMaker
    writes hyperparameters.json."""
    from scones.sagemaker_local import sagemaker_hyperparameters

    conftest = docker_images.load_module(ROOT / "tests" / "integration" / "conftest.py", "integration_conftest")
    return sagemaker_hyperparameters(conftest.QUICK_HYPERPARAMETERS)


def train_in_container(docker: Docker, train_dir: Path, opt_ml: Path) -> Path:
    """`docker run scones-model train` on the SageMaker paths; returns the model folder it wrote."""
    (opt_ml / "input" / "config").mkdir(parents=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(quick_hyperparameters()))
    (opt_ml / "model").mkdir()
    started = time.monotonic()
    log(f"training the quick model in a container on {train_dir}")
    result = docker_images.run_training(docker, opt_ml, train_dir)
    if result.returncode != 0:
        failure = opt_ml / "output" / "failure"
        reason = failure.read_text() if failure.exists() else result.stderr[-2000:]
        raise ImageBuildError(f"training in the container failed: {reason}")
    log(f"trained in {time.monotonic() - started:.0f} s")
    return opt_ml / "model"


def compose_env(docker: Docker, model_dir: Path) -> dict[str, str]:
    env = {
        **docker.env,
        "LOCALSTACK_IMAGE": docker_images.LOCALSTACK_IMAGE,
        "SCONES_MODEL_HOST_DIR": str(model_dir),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    if docker.host.startswith("unix://"):
        env["DOCKER_SOCKET"] = docker.host.removeprefix("unix://")  # the compose file mounts it into LocalStack
    return env


def compose(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = ["docker-compose", "--project-name", PROJECT, "--file", str(COMPOSE_FILE), *args]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ImageBuildError(f"docker-compose {' '.join(args)} failed: {(result.stdout + result.stderr)[-3000:]}")
    return result


def wait_healthy(docker: Docker, env: dict[str, str]) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while True:
        status = {}
        for service in SERVICES:
            ids = compose(env, "ps", "-q", service).stdout.split()
            inspect = docker.run("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", *ids, check=False)
            status[service] = inspect.stdout.strip() or "missing"
        if all(value == "running healthy" for value in status.values()):
            return
        if any(value.split()[0] in ("exited", "dead", "missing") for value in status.values()):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    logs = compose(env, "logs", "--no-color", "--tail", "40", check=False)
    raise ImageBuildError(f"services not healthy: {status}\n{(logs.stdout + logs.stderr)[-4000:]}")


@contextlib.contextmanager
def compose_up(docker: Docker, model_dir: Path) -> Iterator[float]:
    """The compose file's services up and healthy (yields the seconds it took); down afterwards."""
    env = compose_env(docker, model_dir)
    started = time.monotonic()
    try:
        compose(env, "up", "--detach", "--no-build")
        wait_healthy(docker, env)
        yield time.monotonic() - started
    finally:
        compose(env, "down", "--volumes", "--remove-orphans", check=False)


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
        docker_images.model_image(docker)
        docker_images.localstack_image(docker)
        model_dir = train_in_container(docker, train_dir, Path(scratch) / "opt_ml")
        with compose_up(docker, model_dir) as took:
            log(f"docker-compose up: localstack and model healthy in {took:.0f} s; running {' '.join(command)}")
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
