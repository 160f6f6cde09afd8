"""`scones up` as a user runs it: a subprocess whose output is read line by line while it runs."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn of a child the test stops with SIGINT, as Ctrl-C would: SIGINT's default disposition, which
    Python turns into KeyboardInterrupt. A suite started as a background job (`pytest ... &`, CI wrappers) has
    SIGINT ignored, children inherit that, and Python then leaves it ignored: the child would never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


UP_READY = "Ctrl-C stops everything."  # the last line `scones up` prints once everything runs
UP_TIMEOUT_S = 300


@dataclass
class UpProcess:
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    arrived: queue.Queue = field(default_factory=queue.Queue)

    def wait_for_line(self, wanted: str, timeout_s: float = UP_TIMEOUT_S, since: int = 0) -> str:
        """The first line from index `since` on that contains `wanted`, reading more output until it comes."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.lines[since:]:
                if wanted in line:
                    return line
            since = len(self.lines)
            line = self.arrived.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"scones up ended before printing {wanted!r}:\n" + "\n".join(self.lines)
            self.lines.append(line)

    def read_to_end(self, timeout_s: float = 10) -> str:
        """Every line up printed, once it has exited."""
        while (line := self.arrived.get(timeout=timeout_s)) is not None:
            self.lines.append(line)
        return "\n".join(self.lines)


def start_up(
    workdir: Path, stack_name: str, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
) -> UpProcess:
    """Start `scones up` (with `extra_args`) and return once it says it is ready (or fail with what it printed)."""
    command = [sys.executable, "-m", "scones", "up", "--workdir", str(workdir), "--stack-name", stack_name]
    command += extra_args
    up = UpProcess(
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=ctrl_c_as_in_a_terminal,
        )
    )

    def pump():
        for line in up.process.stdout:
            up.arrived.put(line.rstrip("\n"))
        up.arrived.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + UP_TIMEOUT_S
    try:
        while UP_READY not in up.lines:
            line = up.arrived.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "scones up ended before it was ready:\n" + "\n".join(up.lines)
            up.lines.append(line)
    except BaseException:
        up.process.kill()
        raise
    return up
