"""The images the Docker tests run, built here with no registry: Debian bases, `scones-model`, a LocalStack.

- Base images come from Debian's packages: `debootstrap` into a folder, then `docker import`.
- `scones-model` is built from local_model/Dockerfile exactly as a user builds it, with two build arguments:
  the Debian base instead of python:3.11-slim, and local_model/wheels/ (filled by `pip download` on the
  host, through pip's configured registries) instead of PyPI. The build runs with `--network none`.
- The LocalStack stand-in (the official image cannot be pulled): localstack-core at the pin
  tests/localstack/run.py installs, with the subprocess Lambda executor, on a Debian 13 base (Python 3.13,
  which LocalStack needs); LocalStack's own Docker executor would need a Lambda runtime image and an init
  binary that it downloads at run time.

Each image is labelled with a hash of its inputs and rebuilt only when they change.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODEL_DOCKERFILE = ROOT / "local_model" / "Dockerfile"
MODEL_REQUIREMENTS = ROOT / "local_model" / "requirements.txt"
MODEL_WHEELS = ROOT / "local_model" / "wheels"
MODEL_IMAGE = "scones-model:latest"  # what docker-compose.yml and SageMaker local mode run
LOCALSTACK_DIR = ROOT / "tests" / "localstack"
LOCALSTACK_DOCKERFILE = HERE / "localstack.Dockerfile"
LOCALSTACK_IMAGE = "scones-localstack:2026.3.0"
INPUTS_LABEL = "org.scones.inputs"
# Debian 12 has the model's Python (3.11, as python:3.11-slim); Debian 13 has LocalStack's (3.13).
BASES = {
    "bookworm": ["python3", "python3-venv"],
    "trixie": ["python3", "python3-venv", "curl"],  # curl: the compose file's LocalStack health check
}


class ImageBuildError(Exception):
    """An image could not be built; the message has the end of the failing command's output."""


def log(message: str) -> None:
    print(f"docker: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Docker:
    host: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, **kwargs)
        if check and result.returncode != 0:
            raise ImageBuildError(f"docker {' '.join(args[:3])} ... failed: {_tail(result.stdout + result.stderr)}")
        return result

    def label_of(self, image: str) -> str | None:
        result = self.run("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False)
        if result.returncode != 0:
            return None
        return (json.loads(result.stdout) or {}).get(INPUTS_LABEL)

    def size_of(self, image: str) -> str:
        """The image's size as `docker images` shows it (decimal units), e.g. "1.17 GB"."""
        size = int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
        return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def fingerprint(*parts: str | bytes | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for path in sorted(part.rglob("*")) if part.is_dir() else [part]:
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".whl":
                    digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        else:
            digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _timed(docker: Docker, what: str, build) -> str:
    started = time.monotonic()
    log(f"building {what}")
    image = build()
    log(f"built {image} in {time.monotonic() - started:.0f} s, {docker.size_of(image)}")
    return image


def _reused(docker: Docker, image: str) -> str:
    log(f"reusing {image} ({docker.size_of(image)})")
    return image


def base_image(docker: Docker, suite: str) -> str:
    """`scones-base:<suite>`: a minimal Debian root from debootstrap, imported; reused while its inputs hold."""
    packages = BASES[suite]
    tag = f"scones-base:{suite}"
    inputs = fingerprint("debootstrap --variant=minbase", suite, ",".join(packages))
    if docker.label_of(tag) == inputs:
        return _reused(docker, tag)

    def build() -> str:
        with tempfile.TemporaryDirectory(prefix=f"scones-{suite}-") as scratch:
            rootfs = Path(scratch) / "rootfs"
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise ImageBuildError(f"debootstrap {suite} failed: {_tail(result.stdout + result.stderr)}")
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(rootfs / cache, ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                ["docker", "import", "--change", f"LABEL {INPUTS_LABEL}={inputs}", "-", tag],
                stdin=tar.stdout,
                env=docker.env,
                capture_output=True,
                text=True,
            )
            tar.stdout.close()
            if tar.wait() != 0 or imported.returncode != 0:
                raise ImageBuildError(f"docker import {tag} failed: {_tail(imported.stderr)}")
        return tag

    return _timed(docker, f"{tag} from Debian's packages (debootstrap, about a minute)", build)


def download_wheels(python: str, requirements: list[str], dest: Path) -> None:
    """The wheels of `requirements` and their dependencies for `python`, through pip's configured registries
    (`pip wheel`: a dependency published only as a source archive is built into a wheel here, not offline)."""
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(dest),
            *requirements,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ImageBuildError(f"pip wheel failed: {_tail(result.stderr)}")


@dataclass(frozen=True)
class OfflineBuild:
    """The build arguments of local_model/Dockerfile for a build with no registry: a Debian 12 base made here and
    the wheels of its requirements in local_model/wheels/ (the build context), which the Dockerfile copies."""

    base_image: str
    pip_source: str = "--no-index --find-links /tmp/wheels"


def offline_build(docker: Docker, python: str = sys.executable) -> OfflineBuild:
    """The Debian 12 base image and the wheels, ready for `docker build` or `docker compose build`."""
    base = base_image(docker, "bookworm")
    download_wheels(python, ["-r", str(MODEL_REQUIREMENTS)], MODEL_WHEELS)
    return OfflineBuild(base)


def model_image(docker: Docker, python: str = sys.executable) -> str:
    """`scones-model:latest` from local_model/Dockerfile, on the Debian 12 base, offline."""
    base = base_image(docker, "bookworm")
    sources = sorted((ROOT / "local_model").glob("*.py"))
    inputs = fingerprint(
        docker.label_of(base) or "", MODEL_DOCKERFILE, MODEL_REQUIREMENTS, ROOT / ".dockerignore",
        *sources, ROOT / "local_model" / "bin",
    )  # fmt: skip
    if docker.label_of(MODEL_IMAGE) == inputs:
        return _reused(docker, MODEL_IMAGE)

    def build() -> str:
        offline = offline_build(docker, python)
        docker.run(
            "build", "--network", "none", "--force-rm",
            "--file", str(MODEL_DOCKERFILE),
            "--build-arg", f"BASE_IMAGE={offline.base_image}",
            "--build-arg", f"PIP_SOURCE={offline.pip_source}",
            "--label", f"{INPUTS_LABEL}={inputs}",
            "--tag", MODEL_IMAGE,
            str(ROOT),
        )  # fmt: skip
        return MODEL_IMAGE

    return _timed(docker, f"{MODEL_IMAGE} from local_model/Dockerfile (offline, base {base})", build)


def load_module(path: Path, name: str):
    """A file of the repository that is not in an importable package (a script, a conftest), as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def localstack_support():
    """tests/localstack/run.py as a module: LocalStack's pin, its constraints, the plugin, command_env()."""
    return load_module(LOCALSTACK_DIR / "run.py", "localstack_run")


def run_training(
    docker: Docker, opt_ml: Path, train_dir: Path, image: str = MODEL_IMAGE, **kwargs
) -> subprocess.CompletedProcess:
    """`docker run <image> train` as SageMaker runs a training job: `opt_ml` as /opt/ml, `train_dir` as the
    train channel (read-only), no network. Returns the finished process; the caller judges it. `kwargs` go to
    subprocess.run (a timeout)."""
    return docker.run(
        "run", "--rm", "--network", "none",
        "-v", f"{opt_ml}:/opt/ml", "-v", f"{Path(train_dir).resolve()}:/opt/ml/input/data/train:ro",
        image, "train",
        check=False, **kwargs,
    )  # fmt: skip


def handler_boto3() -> str:
    """The boto3 requirement of pyproject.toml ("boto3==X"), which the handlers run with on every emulator."""
    match = re.search(r'"(boto3==[^"]+)"', (ROOT / "pyproject.toml").read_text())
    if match is None:
        raise ImageBuildError("pyproject.toml pins no boto3==")
    return match[1]


def localstack_image(docker: Docker) -> str:
    """The LocalStack stand-in on the Debian 13 base, with the subprocess Lambda executor, offline."""
    localstack_run = localstack_support()
    base = base_image(docker, "trixie")
    handler_base = base_image(docker, "bookworm")
    inputs = fingerprint(
        docker.label_of(base) or "", docker.label_of(handler_base) or "", LOCALSTACK_DOCKERFILE,
        localstack_run.install_fingerprint(), handler_boto3(),
    )  # fmt: skip
    if docker.label_of(LOCALSTACK_IMAGE) == inputs:
        return _reused(docker, LOCALSTACK_IMAGE)

    def build() -> str:
        python_313 = localstack_run.find_python_313()
        with tempfile.TemporaryDirectory(prefix="scones-localstack-image-") as scratch:
            context = Path(scratch)
            shutil.copy(localstack_run.CONSTRAINTS, context / "constraints.txt")
            plugin = context / "plugin"
            plugin.mkdir()
            shutil.copy(LOCALSTACK_DIR / "pyproject.toml", plugin)
            shutil.copytree(
                LOCALSTACK_DIR / "localstack_subprocess_executor",
                plugin / "localstack_subprocess_executor",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            wheels = context / "wheels"
            # The plugin's build backend too: pip builds the plugin inside the offline build.
            download_wheels(
                python_313,
                [localstack_run.LOCALSTACK_REQUIREMENT, "flit_core>=3.9,<4", "-c", str(localstack_run.CONSTRAINTS)],
                wheels,
            )
            # The handlers' Python: the template's python3.11 (Debian 12's) with the boto3 pyproject.toml pins.
            download_wheels(sys.executable, [handler_boto3()], context / "handler-wheels")
            docker.run(
                "build", "--network", "none", "--force-rm",
                "--file", str(LOCALSTACK_DOCKERFILE),
                "--build-arg", f"BASE_IMAGE={base}",
                "--build-arg", f"HANDLER_BASE_IMAGE={handler_base}",
                "--build-arg", f"HANDLER_BOTO3={handler_boto3()}",
                "--build-arg", f"LOCALSTACK_REQUIREMENT={localstack_run.LOCALSTACK_REQUIREMENT}",
                "--label", f"{INPUTS_LABEL}={inputs}",
                "--tag", LOCALSTACK_IMAGE,
                str(context),
            )  # fmt: skip
        return LOCALSTACK_IMAGE

    return _timed(docker, f"{LOCALSTACK_IMAGE} (localstack-core + the subprocess Lambda executor, offline)", build)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
