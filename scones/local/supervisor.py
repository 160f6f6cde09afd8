"""One child-process supervisor for the servers the CLI and the tests start (ministack, the model server):
launch on a port of 127.0.0.1 (a port we picked is picked again if someone takes it first), wait until the
child's health check passes, notice at once when it exits, stop it with SIGTERM then SIGKILL (its whole
process group when it has one, so workers it started go too), and keep its output in a log file.

A subclass says what to run (`command`, `environment`, `cwd`), when it is ready (`check_health`) and which
errors to raise; everything about the process itself is here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1
LOG_TAIL_CHARS = 2000
PICKED_PORT_ATTEMPTS = 3


class ChildStartError(RuntimeError):
    """Base of the errors a supervised child raises while starting (subclasses name the child)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (another process may still take it before the child binds)."""
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


class ChildProcess:
    """A server in a child process, bound to `host:port` (None: a free one, picked again if taken)."""

    name = "child"
    start_error: type[Exception] = ChildStartError  # exited, unhealthy, or too slow to start
    port_taken_error: type[Exception] = ChildStartError
    # Text in the child's log that says its port was taken between our check and its bind.
    port_taken_markers: tuple[str, ...] = ("address already in use",)
    own_process_group = False  # True: the child leads a new process group, stopped as a whole
    stop_timeout_s = 10.0

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 60.0,
        log_path: str | os.PathLike | None = None,
    ):
        self.host = host
        self._requested_port = port
        self.port: int | None = port
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen | None = None
        self._log_file = None

    # --- what a subclass provides ---------------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> Path | None:
        return None

    def check_health(self) -> tuple[bool, str | None]:
        """(ready, None) while starting; (False, reason) when the child answered that it cannot serve."""
        raise NotImplementedError

    def taken_port_message(self) -> str:
        return f"port {self.port} on {self.host} is already in use"

    # --- the process ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The child's exit code once it has exited by itself (None while it runs or before it started)."""
        return self._process.poll() if self._process is not None else None

    def start(self):
        """Start the child and wait until it is healthy; on any failure it is stopped again."""
        # A port we picked can be taken between the check and the child's bind: pick again, a few times.
        # A port the caller chose is never swapped.
        attempts = 1 if self._requested_port is not None else PICKED_PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self.port = self._requested_port or free_port(self.host)
            try:
                if not is_port_free(self.host, self.port):
                    raise self.port_taken_error(self.taken_port_message())
                self._launch()
                self._wait_until_healthy()
                return self
            except self.port_taken_error:
                self.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix=f"scones-{self.name.replace(' ', '-')}-")) / "output.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.cwd(),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_process_group,
        )
        logger.info(
            "started %s (pid %d) on %s:%s, log %s", self.name, self._process.pid, self.host, self.port, self.log_path
        )

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                tail = self.log_tail()
                if any(marker in tail.lower() for marker in self.port_taken_markers):
                    raise self.port_taken_error(f"{self.taken_port_message()} (log {self.log_path}):\n{tail}")
                raise self.start_error(
                    f"{self.name} exited with code {returncode} while starting; log {self.log_path} ends with:\n{tail}"
                )
            ready, refusal = self.check_health()
            if ready:
                return
            if refusal is not None:
                raise self.start_error(f"{self.name} is unhealthy: {refusal}; see log {self.log_path}")
            if time.monotonic() > deadline:
                raise self.start_error(
                    f"{self.name} did not answer {self.health_url()} within {self.startup_timeout_s:.0f} s; "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def health_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:] if self.log_path else ""
        except OSError:
            return ""

    def _signal(self, process: subprocess.Popen, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_process_group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; the process group's stragglers are killed too."""
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=5)
        if process is not None and self.own_process_group:
            # Workers outlive a leader that exited on its own; they are still in its group.
            self._signal(process, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed (fault tests). `start()` may follow."""
        if self._process is not None and self._process.poll() is None:
            self._signal(self._process, signal.SIGKILL)
            self._process.wait()
        self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
