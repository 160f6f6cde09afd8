"""Run a command against a LocalStack started here, without Docker: `python tests/localstack/run.py -- CMD...`.

Installs LocalStack once into `.venv-localstack` (Python 3.13, which LocalStack 2026.3.0 requires) with
the subprocess Lambda executor beside it, starts it on 127.0.0.1, waits for its health endpoint, runs
CMD with `AWS_ENDPOINT_URL` and dummy credentials, stops LocalStack and exits with CMD's exit code.
Standard library only, so any Python >= 3.11 can run it. Importable: `localstack()` is the same
set-up as a context manager (benchmarks/emulators.py uses it).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a script: the repository root, for tests.helpers
from tests.helpers.wrapped_command import wrapped_command

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = ROOT / ".venv-localstack"
LOCALSTACK_REQUIREMENT = "localstack-core[runtime]==2026.3.0"
CONSTRAINTS = HERE / "constraints.txt"
PLUGIN_SOURCES = [HERE / "pyproject.toml", *sorted((HERE / "localstack_subprocess_executor").glob("*.py"))]
STARTUP_TIMEOUT_S = 180  # it is healthy within 1-3 s here; the deadline only bounds a hang
STOP_TIMEOUT_S = 30


class LocalStackError(Exception):
    """LocalStack could not be installed, started or stopped."""


def find_python_313() -> str:
    """The interpreter for .venv-localstack: $LOCALSTACK_PYTHON, pyenv's 3.13, or python3.13 on PATH."""
    if explicit := os.environ.get("LOCALSTACK_PYTHON"):
        return explicit
    if shutil.which("pyenv"):
        prefix = subprocess.run(["pyenv", "prefix", "3.13"], capture_output=True, text=True)
        candidate = Path(prefix.stdout.strip().split(":")[0]) / "bin" / "python3.13"
        if prefix.returncode == 0 and candidate.exists():
            return str(candidate)
    if found := shutil.which("python3.13"):
        return found
    raise LocalStackError("no Python 3.13 found (LocalStack needs it): install one or set LOCALSTACK_PYTHON")


def install_fingerprint() -> str:
    digest = hashlib.sha256(LOCALSTACK_REQUIREMENT.encode())
    for path in [CONSTRAINTS, *PLUGIN_SOURCES]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_installed(venv: Path = VENV) -> Path:
    """Creates or updates the LocalStack environment when its inputs changed; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{install_fingerprint()}"
    if stamp.exists():
        return python
    # One installer at a time: two test runs starting together would otherwise race pip.
    lock_path = Path(tempfile.gettempdir()) / f"scones-localstack-{hashlib.sha256(bytes(venv)).hexdigest()[:8]}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            install(venv, python, stamp)
    return python


def install(venv: Path, python: Path, stamp: Path) -> None:
    started = time.monotonic()
    first = not python.exists()
    what = "installing" if first else "updating"
    print(
        f"localstack: {what} {LOCALSTACK_REQUIREMENT} in {venv} (a first install takes about a minute)", file=sys.stderr
    )
    if first:
        subprocess.run([find_python_313(), "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, LOCALSTACK_REQUIREMENT, "--constraint", str(CONSTRAINTS)], check=True)
    # --force-reinstall: the plugin's version does not change when its code does.
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(HERE)], check=True)
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    print(f"localstack: {what} took {time.monotonic() - started:.0f} s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:
            return response.status == 200 and "services" in json.load(response)
    except (OSError, ValueError):
        return False


@dataclass
class RunningLocalStack:
    endpoint: str
    process: subprocess.Popen
    log_path: Path
    startup_s: float
    keep_log: bool = False  # set by the caller when its own work failed


def check_handler_python(python: str) -> None:
    # The Lambda runtime has boto3; without it every handler would fail at import.
    probe = subprocess.run([python, "-c", "import boto3"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise LocalStackError(f"{python} cannot import boto3, which the handlers need: {probe.stderr.strip()}")


@contextlib.contextmanager
def localstack(handler_python: str = sys.executable) -> Iterator[RunningLocalStack]:
    """Starts LocalStack on a free loopback port and stops it on exit.

    handler_python runs the Lambda handlers; by default the interpreter running this, which for the
    project is .venv's Python 3.11 with the boto3 that pyproject.toml pins (as on ministack).
    The working directory (LocalStack's data and log) is removed afterwards unless something failed.
    """
    python = ensure_installed()
    check_handler_python(handler_python)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="scones-localstack-"))
    log_path = workdir / "localstack.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        OVERRIDE_IN_DOCKER="0",  # not in a container: no Docker network or host lookups
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        LOCALSTACK_HOST=f"127.0.0.1:{port}",  # URLs it returns; localhost.localstack.cloud needs DNS
        DISABLE_EVENTS="1",  # no analytics calls home
        SKIP_SSL_CERT_DOWNLOAD="1",
        DNS_ADDRESS="0",  # no DNS server (it would want port 53)
        FILESYSTEM_ROOT=str(workdir / "filesystem"),
        TMPDIR=str(workdir / "tmp"),  # unzipped Lambda code and executor logs land here, removed with it
        LAMBDA_RUNTIME_EXECUTOR="subprocess",
        LAMBDA_SUBPROCESS_PYTHON=handler_python,
    )
    (workdir / "tmp").mkdir()
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the handlers it started can be ended too
        )
    keep_log = True
    try:
        deadline = started + STARTUP_TIMEOUT_S
        while not is_healthy(endpoint):
            if process.poll() is not None:
                raise LocalStackError(f"LocalStack exited with {process.returncode} while starting")
            if time.monotonic() > deadline:
                raise LocalStackError(f"LocalStack not healthy after {STARTUP_TIMEOUT_S} s")
            time.sleep(0.2)
        running = RunningLocalStack(endpoint, process, log_path, time.monotonic() - started)
        yield running
        if process.poll() is not None:
            raise LocalStackError(f"LocalStack exited with {process.returncode} during the run")
        keep_log = running.keep_log
    finally:
        stopped_cleanly = stop(process)
        if keep_log or not stopped_cleanly:
            print(f"localstack: log kept at {log_path}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def stop(process: subprocess.Popen) -> bool:
    """SIGTERM (LocalStack shuts its services down), then the rest of its process group; True if clean."""
    clean = True
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"localstack: did not stop within {STOP_TIMEOUT_S} s, killing it", file=sys.stderr)
            process.kill()
            process.wait()
            clean = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # handler subprocesses left behind, if any
    return clean


def command_env(endpoint: str) -> dict[str, str]:
    """The caller's environment aimed at LocalStack, with dummy credentials so no real ones are used."""
    env = {key: value for key, value in os.environ.items() if key not in ("AWS_PROFILE", "AWS_SESSION_TOKEN")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    return env


def main(argv: list[str] | None = None) -> int:
    command = wrapped_command(__doc__.splitlines()[0], argv)  # from here a CI time-out stops LocalStack too
    try:
        with localstack() as running:
            print(
                f"localstack: ready at {running.endpoint} in {running.startup_s:.1f} s; running {' '.join(command)}",
                file=sys.stderr,
            )
            returncode = subprocess.run(command, env=command_env(running.endpoint)).returncode
            running.keep_log = returncode != 0
    except LocalStackError as e:
        print(f"localstack: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"localstack: installation failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localstack: interrupted; LocalStack stopped", file=sys.stderr)
        return 130
    return returncode


if __name__ == "__main__":
    sys.exit(main())
