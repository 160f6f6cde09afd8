"""The Docker tests' real parts: an engine (docker_engine.py) and the `scones-model` image built offline
(docker_images.py), once per session. No engine here: every test skips with the reason, except where Docker
is required (CI=true or SCONES_REQUIRE_DOCKER=1), where that is a failure."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker_engine
import docker_images
from run import DATA_DIR_VAR, DEFAULT_DATA_DIR, docker_required

from lambdas.contract import CLASSES


def uncaptured(request):
    """Output shown as it happens (the engine's start, image builds and their times belong in the CI log)."""
    return request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled()


@pytest.fixture(scope="session")
def docker(request):
    """A Docker client handle on an engine that answers; DOCKER_HOST points at it for the session."""
    with contextlib.ExitStack() as stack:
        try:
            with uncaptured(request):
                host = stack.enter_context(docker_engine.docker_engine())
        except docker_engine.DockerUnavailableError as e:
            if docker_required():
                pytest.fail(f"Docker is required here (CI=true or SCONES_REQUIRE_DOCKER=1) but unavailable: {e}")
            pytest.skip(f"no Docker engine can be had here: {e}")
        env = stack.enter_context(pytest.MonkeyPatch.context())
        env.setenv("DOCKER_HOST", host)
        yield docker_images.Docker(host)


@pytest.fixture(scope="session")
def model_image(request, docker) -> str:
    with uncaptured(request):
        return docker_images.model_image(docker)


@pytest.fixture(scope="session")
def train_dir() -> Path:
    root = Path(os.environ.get(DATA_DIR_VAR) or DEFAULT_DATA_DIR)
    train = root / "train" if (root / "train").is_dir() else root
    missing = [name for name in CLASSES if not any((train / name).glob("*.png"))]
    if missing:
        pytest.fail(f"no {'/'.join(missing)} PNGs under {train}: set {DATA_DIR_VAR} to the real images")
    return train


@pytest.fixture(scope="session")
def small_train_dir(train_dir, tmp_path_factory) -> Path:
    """40 real images per class, copied (bind mounts carry links, not their targets): training in seconds."""
    root = tmp_path_factory.mktemp("small-train")
    for label in CLASSES:
        (root / label).mkdir()
        for image in sorted((train_dir / label).glob("*.png"))[:40]:
            (root / label / image.name).write_bytes(image.read_bytes())
    return root
