"""Start the model server (`python -m local_model.serve`) as a child process, wait until healthy, stop it.

Used by the CLI and by tests that need a real HTTP endpoint:

    with ModelServer(model_dir) as server:
        requests go to f"{server.url}/invocations"
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from local_model import settings
from scones.local.supervisor import ChildProcess

logger = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT_S = 120.0  # loading torch on 2 busy cores can take tens of seconds
POLL_INTERVAL_S = 0.1
LOG_TAIL_CHARS = 2000


class ModelServerError(Exception):
    """The model server could not be started or stopped."""


class ModelServerStartError(ModelServerError):
    """The server exited, reported an unloadable model, or did not answer /ping before the deadline."""


class PortInUseError(ModelServerError):
    """The requested port is already taken by another process."""


class ModelReloadError(ModelServerError):
    """The model server could not load the new model (it keeps serving the previous one), or did not say in time."""


RELOAD_TIMEOUT_S = 120.0  # loading torch weights on two busy cores: seconds; the deadline bounds a hang


def served_model(url: str) -> dict:
    """The model server's /ping answer: `model_version` (models loaded), `reloads` (done), `reload_error`."""
    with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
        return json.loads(response.read())


def reload_served_model(url: str, pid: int, timeout_s: float = RELOAD_TIMEOUT_S) -> int:
    """Ask the model server at `url` (process `pid`) to load its model directory again (SIGHUP: it swaps the new
    model in once warm, answering every request meanwhile) and wait until it has; the new model version.
    ModelReloadError if it could not (the previous model still serves) or did not answer within `timeout_s`."""
    before = served_model(url)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = served_model(url)
        if now.get("reloads", 0) > before.get("reloads", 0):
            if now.get("model_version", 0) > before.get("model_version", 0):
                return now["model_version"]
            raise ModelReloadError(
                f"the model server {url} could not load the new model and keeps serving the previous one: "
                f"{now.get('reload_error')}"
            )
        time.sleep(POLL_INTERVAL_S)
    raise ModelReloadError(f"the model server {url} did not finish reloading its model within {timeout_s:.0f} s")


class ModelServer(ChildProcess):
    """One `python -m local_model.serve` child process bound to `host:port` (scones/local/supervisor.py runs it).

    `port=None` picks a free port. `env` adds variables to the child's environment (which otherwise
    inherits this process's); the capture_* arguments are shortcuts for the capture variables;
    `extra_args` go to `local_model.serve` as they are (e.g. `["--no-access-log"]`).
    """

    name = "model server"
    start_error = ModelServerStartError
    port_taken_error = PortInUseError
    # SIGTERM makes the server flush captured data, allowing itself 30 s: wait a little longer.
    stop_timeout_s = 40.0

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        capture_destination: str | None = None,
        capture_sampling_percentage: float | None = None,
        endpoint_name: str | None = None,
        log_path: str | os.PathLike | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        extra_args: Sequence[str] = (),
    ):
        super().__init__(host=host, port=port, startup_timeout_s=startup_timeout_s, log_path=log_path)
        self.model_dir = Path(model_dir)
        self._env = dict(env or {})
        if capture_destination is not None:
            self._env[settings.CAPTURE_DESTINATION_VAR] = str(capture_destination)
        if capture_sampling_percentage is not None:
            self._env[settings.CAPTURE_SAMPLING_PERCENTAGE_VAR] = str(capture_sampling_percentage)
        if endpoint_name is not None:
            self._env[settings.ENDPOINT_NAME_VAR] = endpoint_name
        self.extra_args = list(extra_args)

    @property
    def endpoint_name(self) -> str:
        """The one endpoint name the server answers on /endpoints/{name}/invocations (and files captures under)."""
        name = self._env.get(settings.ENDPOINT_NAME_VAR) or os.environ.get(settings.ENDPOINT_NAME_VAR, "")
        return name.strip() or settings.DEFAULT_ENDPOINT_NAME

    @property
    def url(self) -> str:
        if self.port is None:
            raise ModelServerError("the model server has not been started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> ModelServer:
        if self._process is not None:
            raise ModelServerError("the model server is already started")
        return super().start()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "local_model.serve",
            "--model-dir",
            str(self.model_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self._env, "PYTHONUNBUFFERED": "1"}

    def health_url(self) -> str:
        return f"{self.url}/ping"

    def check_health(self) -> tuple[bool, str | None]:
        status, body = self._ping()
        if status is None:
            return False, None
        # The server answers only after it tried to load the model, so any answer but 200 is final.
        return status == 200, None if status == 200 else f"/ping answered {status}: {body}"

    def _ping(self) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(self.health_url(), timeout=2) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                body = json.loads(body).get("message", body)
            return e.code, body
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, ""

    def reload(self, timeout_s: float = RELOAD_TIMEOUT_S) -> int:
        """Load the model directory again without a restart (reload_served_model); the new model version."""
        if not self.running:
            raise ModelServerError("the model server is not running")
        return reload_served_model(self.url, self.pid, timeout_s)

    def __enter__(self) -> ModelServer:
        return self.start()
