"""The embedded AWS emulator: ministack started as a child process on 127.0.0.1, or the emulator
that AWS_ENDPOINT_URL already points at (LocalStack from docker compose, for instance).

Dummy credentials and a region exist only in the environments made here, for the emulator's
process and for sessions that talk to an emulator: never on a code path that reaches AWS.
Quirks of ministack that matter to this project: cloud/EMULATORS.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from scones.local.supervisor import ChildProcess

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
LOCAL_REGION = "us-east-1"
# Emulators accept any credentials; these exist so boto3 can sign requests.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
# Answered by ministack and by LocalStack alike.
HEALTH_PATH = "/_localstack/health"
# Answered by ministack only: tells the two emulators apart.
MINISTACK_HEALTH_PATH = "/_ministack/health"


class EmulatorError(RuntimeError):
    """The emulator could not be started or reached; the message says what to do."""


class EmulatorPortTakenError(EmulatorError):
    """Something else listens on the emulator's port."""


def local_aws_environment(endpoint_url: str, region: str = LOCAL_REGION) -> dict[str, str]:
    """Environment variables that point boto3 at an emulator, with dummy credentials."""
    return {"AWS_ENDPOINT_URL": endpoint_url, "AWS_DEFAULT_REGION": region, **LOCAL_CREDENTIALS}


def is_reachable(endpoint_url: str, timeout_s: float = 2.0) -> bool:
    """Whether anything answers HTTP at `endpoint_url` (an error status counts as an answer)."""
    try:
        with urllib.request.urlopen(endpoint_url.rstrip("/") + HEALTH_PATH, timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def is_ministack(endpoint_url: str, timeout_s: float = 5.0) -> bool:
    """Whether the emulator at `endpoint_url` is ministack (it answers its own health path; LocalStack
    does not). Tests use it where the two emulators are documented to differ (cloud/EMULATORS.md)."""
    try:
        with urllib.request.urlopen(endpoint_url.rstrip("/") + MINISTACK_HEALTH_PATH, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Ministack(ChildProcess):
    """ministack in a child process: `with Ministack() as emulator: emulator.endpoint_url`.

    It runs with this interpreter, and so do the Lambda handlers it starts as local processes: ministack runs
    them with the first `python3` on its PATH, which child_environment() makes this interpreter's (the Python
    the template's Runtime declares; tests/integration/test_metrics.py asks each function), with this
    environment's boto3, the one matching ministack's pinned botocore.
    It leads a process group of its own: its Lambda workers join it and are stopped with it.
    """

    name = "ministack"
    start_error = EmulatorError
    port_taken_error = EmulatorPortTakenError
    port_taken_markers = ("already in use",)
    own_process_group = True

    def __init__(
        self,
        port: int | None = None,
        *,
        region: str = LOCAL_REGION,
        startup_timeout_s: float = 60.0,
        work_dir: Path | None = None,
    ):
        super().__init__(host=HOST, port=port, startup_timeout_s=startup_timeout_s)
        self.region = region
        self._work_dir = work_dir
        self._own_work_dir: tempfile.TemporaryDirectory | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise EmulatorError("ministack has not been started")
        return f"http://{HOST}:{self.port}"

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            self._own_work_dir = tempfile.TemporaryDirectory(prefix="scones-ministack-")
            self._work_dir = Path(self._own_work_dir.name)
        return self._work_dir

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ministack"]

    def cwd(self) -> Path:
        return self.work_dir

    def environment(self) -> dict[str, str]:
        return self.child_environment()

    def child_environment(self) -> dict[str, str]:
        """ministack's environment, built from scratch: its Lambda handlers inherit all of it."""
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL") if name in os.environ}
        # This interpreter's folder first: a virtual environment's bin/ (ours: .venv) holds its python3.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *filter(None, [env.get("PATH")])])
        env.update(LOCAL_CREDENTIALS)
        env.update(
            {
                "GATEWAY_PORT": str(self.port),
                "BIND_HOST": HOST,
                "MINISTACK_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                # Its pid file, S3 spill files and Lambda code dirs go under TMPDIR: keep them ours.
                "TMPDIR": str(self.work_dir),
                "S3_DATA_DIR": str(self.work_dir / "s3"),
                # These listeners bind 0.0.0.0 on fixed ports by default; nothing here needs them.
                "IOT_MTLS_ENABLED": "0",
                "SFTP_ENABLED": "0",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def taken_port_message(self) -> str:
        return f"port {self.port} on {HOST} is taken; choose another or leave it unset"

    def health_url(self) -> str:
        return self.endpoint_url + MINISTACK_HEALTH_PATH

    def check_health(self) -> tuple[bool, str | None]:
        try:
            with urllib.request.urlopen(self.health_url(), timeout=1.0) as response:
                return response.status == 200, None
        except (urllib.error.URLError, OSError):
            return False, None

    def start(self) -> str:
        if self.running:
            return self.endpoint_url
        super().start()
        return self.endpoint_url

    def _launch(self) -> None:
        self.log_path = self.work_dir / "ministack.log"  # a fresh work dir after a failed attempt
        super()._launch()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop ministack and the Lambda workers it started (its process group); remove its own work dir."""
        super().stop(timeout_s)
        if self._own_work_dir is not None:
            self._own_work_dir.cleanup()
            self._own_work_dir, self._work_dir = None, None

    def __enter__(self) -> Ministack:
        self.start()
        return self


@contextlib.contextmanager
def emulator_endpoint(environ: Mapping[str, str] | None = None, **ministack_options) -> Iterator[str]:
    """The emulator to use: AWS_ENDPOINT_URL when it is set (it must answer), else a fresh ministack
    that is stopped on exit."""
    environ = os.environ if environ is None else environ
    configured = environ.get("AWS_ENDPOINT_URL", "")
    if configured:
        if not is_reachable(configured):
            raise EmulatorError(
                f"AWS_ENDPOINT_URL={configured} does not answer: start the emulator there, "
                "or unset AWS_ENDPOINT_URL to use the embedded one"
            )
        yield configured
        return
    with Ministack(**ministack_options) as emulator:
        yield emulator.endpoint_url
