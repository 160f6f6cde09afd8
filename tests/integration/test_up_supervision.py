"""`scones up` watches what it started: when its emulator or its model server dies, it says which at once,
stops the rest, forgets its state and exits non-zero (3), instead of serving on as if nothing happened.
And `scones teardown` tells the truth about what `scones up` could not delete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import psutil
import pytest

from local_model.classifier import pack_model_tar
from scones.errors import EXIT_ENVIRONMENT, EXIT_OK
from scones.local.emulator import Ministack
from scones.local.state_file import read_state
from scones.pipeline import steps

from .up_process import start_up

pytestmark = pytest.mark.integration

NOTICE_WITHIN_S = 30


def without_aws_settings() -> dict[str, str]:
    """The suite's environment without its emulator: `scones up` starts an embedded one."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def child(process: subprocess.Popen, marker: str) -> psutil.Process:
    (found,) = [p for p in psutil.Process(process.pid).children() if marker in " ".join(p.cmdline())]
    return found


@pytest.mark.parametrize(("marker", "name"), [("ministack", "ministack"), ("local_model.serve", "model server")])
def test_a_dead_child_ends_scones_up_with_a_clear_message(model_dir, tmp_path, marker, name):
    workdir = tmp_path / "work"
    pack_model_tar(model_dir, steps.model_paths(workdir).tarball)
    up = start_up(workdir, f"scones-watch-{uuid.uuid4().hex[:8]}", env=without_aws_settings())
    try:
        victim = child(up.process, marker)
        others = [p for p in psutil.Process(up.process.pid).children() if p.pid != victim.pid]
        os.kill(victim.pid, signal.SIGKILL)
        code = up.process.wait(timeout=NOTICE_WITHIN_S + 60)
    finally:
        if up.process.poll() is None:
            up.process.kill()
    output = up.read_to_end()
    assert code == EXIT_ENVIRONMENT, output
    assert (
        f"error: ChildExitedError: the {name} exited with code -9" in output
        or f"the {name} exited with code -9" in output
    )
    assert not (workdir / "state.json").exists()  # no stale state for the next `scones up`
    gone = psutil.wait_procs(others, timeout=10)[1]
    assert gone == [], [p.cmdline() for p in gone]  # the rest was stopped too


def teardown(workdir, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "scones", "teardown", "--workdir", str(workdir)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_teardown_fails_while_the_stack_up_could_not_delete_is_still_recorded(model_dir, tmp_path):
    """`scones up` on an emulator it did not start (AWS_ENDPOINT_URL), which then stops: up cannot delete its
    stack when `scones teardown` stops it. Teardown must not say done: it tries again, fails with the reason
    and keeps the record; once the emulator answers again, a second teardown finishes and forgets it."""
    workdir = tmp_path / "work"
    pack_model_tar(model_dir, steps.model_paths(workdir).tarball)
    stack_name = f"scones-orphan-{uuid.uuid4().hex[:8]}"
    with Ministack() as emulator:
        port, env = emulator.port, {**without_aws_settings(), "AWS_ENDPOINT_URL": emulator.endpoint_url}
        up = start_up(workdir, stack_name, env=env)
    # The emulator is gone; `scones up` still runs.
    try:
        first = teardown(workdir, env)
        up.process.wait(timeout=60)
    finally:
        if up.process.poll() is None:
            up.process.kill()
    up_output = up.read_to_end()
    assert f"teardown of stack {stack_name} failed" in up_output
    assert first.returncode == EXIT_ENVIRONMENT, first.stdout + first.stderr
    assert f"`scones up` ended without deleting stack {stack_name}: trying again" in first.stdout
    assert "does not answer" in first.stderr
    assert "done" not in first.stdout.splitlines()
    recorded = read_state(workdir)
    assert recorded is not None and recorded.stack_name == stack_name
    assert recorded.owner_pid is None and recorded.model_server_pid is None  # up and its model server are gone

    with Ministack(port=port):  # answering again (a fresh ministack, which has no such stack)
        second = teardown(workdir, env)
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    assert f"stack {stack_name} is gone" in second.stdout
    assert read_state(workdir) is None
