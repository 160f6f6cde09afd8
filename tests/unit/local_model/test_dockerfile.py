"""What can be checked of the `scones-model` image without a Docker daemon: entry scripts, pins, contract paths."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from local_model import settings
from local_model.train import TrainingPaths

ROOT = Path(__file__).resolve().parents[3]
CONTAINER = ROOT / "local_model"
DOCKERFILE = CONTAINER / "Dockerfile"
ENTRY_SCRIPTS = {"train": "local_model.train", "serve": "local_model.serve"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> list[str]:
    return [args for kind, args in dockerfile_instructions() if kind == name]


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        pins[name.strip().lower()] = version.strip()
    return pins


def image_pins() -> dict[str, str]:
    """The pins of local_model/requirements.txt, which the Dockerfile installs."""
    pins = {}
    for line in (CONTAINER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def build_args() -> dict[str, str]:
    """ARG name -> default (quotes removed), wherever it stands."""
    args = {}
    for value in instruction("ARG"):
        name, _, default = value.partition("=")
        args[name] = default.strip('"')
    return args


def test_base_image_defaults_to_the_python_the_project_requires():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=3\.(\d+)", requires).group(1)
    assert re.fullmatch(rf"python:3\.{minor}-slim", build_args()["BASE_IMAGE"])
    assert instruction("FROM") == ["${BASE_IMAGE} AS dependencies", "${BASE_IMAGE}"]


def test_torch_pin_equals_pyprojects_and_comes_from_the_cpu_index_by_default():
    assert image_pins()["torch"] == pyproject_pins()["torch"]
    assert "torchvision" not in image_pins() and "torchvision" not in pyproject_pins()
    assert build_args()["PIP_SOURCE"] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    (install,) = [run for run in instruction("RUN") if "pip install" in run]
    assert "${PIP_SOURCE}" in install and "-r /tmp/requirements.txt" in install


def test_every_pin_in_the_image_equals_pyprojects():
    docker, project = image_pins(), pyproject_pins()
    assert docker, "the image pins nothing"
    assert {name: version for name, version in docker.items() if project.get(name) != version} == {}


def test_the_offline_wheel_folder_is_copied_in_and_left_out_of_the_image():
    copies = instruction("COPY")
    assert "local_model/wheels/ /tmp/wheels/" in copies
    assert (CONTAINER / "wheels").is_dir()  # committed (a README), so an ordinary build finds the folder
    # The final stage takes only the environment from the first, not /tmp/wheels.
    assert "--from=dependencies /opt/venv /opt/venv" in copies


def test_no_buildkit_only_syntax():
    # CI builds with the classic builder (Debian's dockerd, no buildx): no --chmod, no RUN --mount, no
    # `# syntax=` line (BuildKit would fetch that frontend image from a registry).
    text = DOCKERFILE.read_text()
    assert "--chmod" not in text and "--mount" not in text and "# syntax=" not in text


def _third_party_imports() -> set[str]:
    modules = set()
    for path in CONTAINER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in ("local_model", "__future__")}


def test_every_library_the_container_code_imports_is_installed_in_the_image():
    distributions = importlib.metadata.packages_distributions()
    installed = set(image_pins())
    needed = {module: {d.lower() for d in distributions.get(module, [module])} for module in _third_party_imports()}
    assert "torch" in needed and "PIL" in needed
    missing = {module: dists for module, dists in needed.items() if not dists & installed}
    assert missing == {}, f"imported by local_model but not installed in the image: {missing}"


def test_the_container_code_does_not_import_the_rest_of_the_repository():
    # Only local_model/ is copied into the image.
    assert not {"scones", "lambdas", "cloud"} & _third_party_imports()


def test_layout_environment_and_port():
    assert instruction("WORKDIR") == ["/opt/program"]
    env = " ".join(instruction("ENV"))
    assert "PYTHONUNBUFFERED=1" in env and "PYTHONPATH=/opt/program" in env and "PATH=/opt/venv/bin:" in env
    assert instruction("EXPOSE") == ["8080"]
    # the code, and the recipe calibration training reads beside it (local_model/recipe.py)
    assert "local_model/*.py local_model/recipe_calibration.json /opt/program/local_model/" in instruction("COPY")


def test_entry_scripts_are_copied_executable_onto_path():
    (copy,) = [c for c in instruction("COPY") if "local_model/bin/" in c]
    parts = copy.split()  # COPY keeps the mode the files have in git (checked below)
    sources, target = parts[:-1], parts[-1]
    assert sorted(sources) == [f"local_model/bin/{name}" for name in sorted(ENTRY_SCRIPTS)]
    assert target.rstrip("/") in ("/usr/local/bin", "/usr/bin", "/bin")  # on PATH in python:*-slim


@pytest.mark.parametrize("name", sorted(ENTRY_SCRIPTS))
def test_entry_scripts_exist_and_are_executable(name):
    script = CONTAINER / "bin" / name
    assert script.is_file() and os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/sh\n")


def _run_with_fake_python(name: str, tmp_path: Path, env: dict | None = None) -> list[str]:
    """Run the entry script with a `python` on PATH that records its arguments."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%s\\n" "$arg"; done\n')
    fake.chmod(0o755)
    result = subprocess.run(
        [str(CONTAINER / "bin" / name)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.splitlines()


def test_train_runs_the_training_module(tmp_path):
    assert _run_with_fake_python("train", tmp_path) == ["-m", "local_model.train"]


def test_serve_binds_every_interface_on_8080(tmp_path):
    assert _run_with_fake_python("serve", tmp_path) == [
        "-m",
        "local_model.serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]


def test_serve_honours_sagemaker_bind_to_port(tmp_path):
    args = _run_with_fake_python("serve", tmp_path, {"SAGEMAKER_BIND_TO_PORT": "9090"})
    assert args[-2:] == ["--port", "9090"]


@pytest.mark.parametrize("name", sorted(ENTRY_SCRIPTS))
def test_entry_scripts_reach_a_real_module(name):
    # With the real interpreter first on PATH, `--help` proves the module exists and takes these arguments.
    result = subprocess.run(
        [str(CONTAINER / "bin" / name), "--help"],
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_serving_defaults_follow_the_sagemaker_contract():
    defaults = settings.read_serve_settings({})
    assert defaults.model_dir == Path("/opt/ml/model")
    assert defaults.port == 8080
    assert defaults.host == "127.0.0.1"  # only the container entry binds 0.0.0.0


def test_training_paths_follow_the_sagemaker_contract(monkeypatch):
    for name in ("SCONES_OPT_ML", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_MODEL_DIR", "SM_OUTPUT_FAILURE"):
        monkeypatch.delenv(name, raising=False)
    paths = TrainingPaths.resolve()
    assert paths.hyperparameters == Path("/opt/ml/input/config/hyperparameters.json")
    assert paths.train_channel == Path("/opt/ml/input/data/train")
    assert paths.model_dir == Path("/opt/ml/model")
    assert paths.failure_file == Path("/opt/ml/output/failure")


def test_build_context_holds_only_the_container_code():
    # The context's own .dockerignore (both builders read it): deny everything, then allow local_model/.
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[:2] == ["*", "!local_model/"]
    assert all(not rule.startswith("!") for rule in rules[2:])
