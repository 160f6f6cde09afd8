"""`scones up` watches what it started: when its emulator or its model server dies, it says which at once,
stops the rest, forgets its state and exits non-zero (3), instead of serving on as if nothing happened."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import psutil
import pytest

from local_model.classifier import pack_model_tar
from scones import steps
from scones.errors import EXIT_ENVIRONMENT

pytestmark = pytest.mark.integration

UP_READY = "Ctrl-C stops everything."
UP_TIMEOUT_S = 300
NOTICE_WITHIN_S = 30


def start_up(workdir) -> tuple[subprocess.Popen, list[str], queue.Queue]:
    # Its own embedded ministack: AWS_ENDPOINT_URL (the suite's emulator) is left out of its environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [sys.executable, "-m", "scones", "up", "--workdir", str(workdir)]
    command += ["--stack-name", f"scones-watch-{uuid.uuid4().hex[:8]}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    arrived: queue.Queue[str | None] = queue.Queue()

    def pump():
        for line in process.stdout:
            arrived.put(line.rstrip("\n"))
        arrived.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + UP_TIMEOUT_S
    while UP_READY not in lines:
        line = arrived.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "scones up ended before it was ready:\n" + "\n".join(lines)
        lines.append(line)
    return process, lines, arrived


def child(process: subprocess.Popen, marker: str) -> psutil.Process:
    (found,) = [p for p in psutil.Process(process.pid).children() if marker in " ".join(p.cmdline())]
    return found


@pytest.mark.parametrize(("marker", "name"), [("ministack", "ministack"), ("local_model.serve", "model server")])
def test_a_dead_child_ends_scones_up_with_a_clear_message(model_dir, tmp_path, marker, name):
    workdir = tmp_path / "work"
    pack_model_tar(model_dir, steps.model_paths(workdir).tarball)
    process, lines, arrived = start_up(workdir)
    try:
        victim = child(process, marker)
        others = [p for p in psutil.Process(process.pid).children() if p.pid != victim.pid]
        os.kill(victim.pid, signal.SIGKILL)
        code = process.wait(timeout=NOTICE_WITHIN_S + 60)
    finally:
        if process.poll() is None:
            process.kill()
    while (line := arrived.get(timeout=10)) is not None:
        lines.append(line)
    output = "\n".join(lines)
    assert code == EXIT_ENVIRONMENT, output
    assert (
        f"error: ChildExitedError: the {name} exited with code -9" in output
        or f"the {name} exited with code -9" in output
    )
    assert not (workdir / "state.json").exists()  # no stale state for the next `scones up`
    gone = psutil.wait_procs(others, timeout=10)[1]
    assert gone == [], [p.cmdline() for p in gone]  # the rest was stopped too
