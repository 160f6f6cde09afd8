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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from local_model import settings

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


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as uvicorn sets it, so a socket lingering in TIME_WAIT is not mistaken for a server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class ModelServer:
    """One `python -m local_model.serve` child process bound to `host:port`.

    `port=None` picks a free port. `env` adds variables to the child's environment (which otherwise
    inherits this process's); the capture_* arguments are shortcuts for the capture variables;
    `extra_args` go to `local_model.serve` as they are (e.g. `["--no-access-log"]`).
    """

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
        self.model_dir = Path(model_dir)
        self.host = host
        self._requested_port = port
        self.port: int | None = port
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self._env = dict(env or {})
        if capture_destination is not None:
            self._env[settings.CAPTURE_DESTINATION_VAR] = str(capture_destination)
        if capture_sampling_percentage is not None:
            self._env[settings.CAPTURE_SAMPLING_PERCENTAGE_VAR] = str(capture_sampling_percentage)
        if endpoint_name is not None:
            self._env[settings.ENDPOINT_NAME_VAR] = endpoint_name
        self.extra_args = list(extra_args)
        self._process: subprocess.Popen | None = None
        self._log_file = None

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

    @property
    def pid(self) -> int | None:
        """The server process's id while started (the CLI records it so another command can stop it)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ModelServer:
        if self._process is not None:
            raise ModelServerError("the model server is already started")
        # A port we picked ourselves can be taken by someone else between the check and uvicorn's
        # bind; try a few fresh ports before giving up. A port the caller chose is never swapped.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            self.port = self._requested_port or find_free_port(self.host)
            try:
                if not is_port_free(self.host, self.port):
                    raise PortInUseError(f"port {self.port} on {self.host} is already in use")
                self._launch()
                self._wait_until_healthy()
                return self
            except PortInUseError:
                self.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="scones-model-server-")) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._env, "PYTHONUNBUFFERED": "1"}
        command = [
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
        logger.info("starting model server on %s (log: %s)", self.url, self.log_path)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise PortInUseError(f"port {self.port} on {self.host} is already in use (log: {self.log_path})")
                raise ModelServerStartError(
                    f"model server exited with code {returncode} before it was healthy; "
                    f"log {self.log_path} ends with:\n{tail}"
                )
            status, body = self._ping()
            if status == 200:
                return
            if status is not None:
                # The server answers only after it tried to load the model, so any other answer is final.
                raise ModelServerStartError(
                    f"model server at {self.url} is unhealthy ({status}): {body}; see log {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise ModelServerStartError(
                    f"model server did not answer {self.url}/ping within {self.startup_timeout_s:.0f} s; "
                    f"log {self.log_path} ends with:\n{self._log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _ping(self) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                body = json.loads(body).get("message", body)
            return e.code, body
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, ""

    def stop(self, timeout_s: float = 40.0) -> None:
        """SIGTERM (the server then flushes captured data, allowing itself 30 s), SIGKILL if it hangs."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("model server did not stop within %.0f s; killing it", timeout_s)
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed (tests of fault handling). `start()` may follow."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
