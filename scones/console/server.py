"""Run the console: uvicorn on 127.0.0.1 (never another address), in a thread of the calling process, on a
free port unless one is asked for. `scones console` serves it in the foreground; `scones up` and
`scones demo --keep-running` beside the environment they run."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from cloud.aws import AwsTarget
from scones.console.app import ConsoleSettings, create_app
from scones.console.monitoring import MonitoringReport, capture_source
from scones.console.store import ConsoleStore
from scones.errors import PortTakenError
from scones.local.supervisor import free_port, is_port_free

HOST = "127.0.0.1"  # the console binds the loopback only: it can start executions
STARTUP_TIMEOUT_S = 30.0
PICKED_PORT_ATTEMPTS = 3


class ConsoleServer:
    """The console for one deployed stack. `start()` returns once it answers; `stop()` ends it."""

    def __init__(
        self,
        aws: AwsTarget,
        outputs: dict[str, str],
        *,
        stack_name: str,
        target: str,
        port: int | None = None,
        allow_writes: bool = True,
        workdir: Path | None = None,
        model_dir: Path | None = None,
    ):
        self.store = ConsoleStore(aws, dict(outputs), allow_writes=allow_writes)
        source = capture_source(outputs)
        self.report = (
            MonitoringReport(
                aws,
                source,
                float(outputs.get("ConfidenceThreshold") or 0.93),
                Path(workdir or ".scones") / "reports" / "console-monitor",
                model_dir if model_dir and model_dir.is_dir() else None,
            )
            if source
            else None
        )
        self.stack_name, self.target = stack_name, target
        self._requested_port = port
        self.port: int | None = None
        self.settings: ConsoleSettings | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ConsoleServer:
        attempts = 1 if self._requested_port else PICKED_PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(HOST)
            if not is_port_free(HOST, port):
                if attempt == attempts:
                    raise PortTakenError(f"port {port} on {HOST} (--console-port) is already in use: choose another")
                continue
            if self._serve(port):
                return self
        raise PortTakenError(f"the console could not bind a port on {HOST} after {attempts} attempts")

    def _serve(self, port: int) -> bool:
        self.port = port
        self.settings = ConsoleSettings(port=port, target=self.target, stack_name=self.stack_name)
        app = create_app(self.store, self.settings, self.report)
        config = uvicorn.Config(
            app, host=HOST, port=port, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the caller's Ctrl-C handling stays in charge
        self._thread = threading.Thread(target=self._server.run, name="scones-console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():  # bind failed (port taken since our check)
                return False
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the console did not start within {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self.store.close()

    def wait(self, poll: Callable[[], None] | None = None) -> None:
        """Block until the server ends (Ctrl-C raises KeyboardInterrupt here)."""
        while self.running:
            if poll is not None:
                poll()
            self._thread.join(timeout=0.5)

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextlib.contextmanager
def console_beside(connection, outputs: dict[str, str], stack_name: str, workdir: Path) -> Iterator[ConsoleServer]:
    """The console of the environment `scones up` or `demo --keep-running` runs, for as long as it runs."""
    from scones.pipeline.steps import model_paths

    server = ConsoleServer(
        connection.aws,
        outputs,
        stack_name=stack_name,
        target=connection.describe(),
        workdir=workdir,
        model_dir=model_paths(workdir).model_dir,
    )
    with server:
        yield server
