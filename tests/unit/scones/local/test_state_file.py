"""Process identity in the state file: a recorded process is signalled only while its pid AND start time
still match, so that teardown never stops an unrelated program that reused the pid."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from scones.local.state_file import (
    MODEL_SERVER_MARKER,
    SessionState,
    is_running,
    process_started_at,
    read_state,
    stop_process,
    write_state,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def sleeper():
    process = subprocess.Popen(SLEEPER)
    yield process
    process.kill()
    process.wait()


def test_the_start_time_of_a_running_process_is_stable_and_a_finished_one_has_none():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_started_at(process.pid)
    assert started is not None and abs(started - time.time()) < 60
    assert process_started_at(process.pid) == started
    process.wait()
    assert process_started_at(process.pid) is None


def test_a_zombie_is_not_running(sleeper):
    started = process_started_at(sleeper.pid)
    sleeper.kill()
    time.sleep(0.2)  # killed but not yet reaped by wait(): a zombie
    assert not is_running(sleeper.pid, started, "sleep")


def test_a_process_is_running_only_with_its_own_start_time(sleeper):
    started = process_started_at(sleeper.pid)
    assert is_running(sleeper.pid, started, marker="not on its command line")
    # The same pid with another start time is another process (the pid was reused).
    assert not is_running(sleeper.pid, started - 10, marker="sleep")


def test_a_reused_pid_is_never_signalled(sleeper):
    started = process_started_at(sleeper.pid)
    assert not stop_process(sleeper.pid, started - 10, MODEL_SERVER_MARKER, timeout_s=1)
    time.sleep(0.1)
    assert sleeper.poll() is None  # still running: nothing was sent to it


def test_the_recorded_process_is_stopped(sleeper):
    started = process_started_at(sleeper.pid)
    assert stop_process(sleeper.pid, started, MODEL_SERVER_MARKER, timeout_s=5)
    assert sleeper.wait(5) == -15  # SIGTERM first


def test_a_process_that_ignores_sigterm_is_killed():
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
    )
    try:
        time.sleep(0.5)  # let it install its handler
        assert stop_process(stubborn.pid, process_started_at(stubborn.pid), "x", timeout_s=0.5)
        assert stubborn.wait(5) == -9
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_state_file_without_start_times_falls_back_to_the_command_line(sleeper):
    """State files written before start times were recorded: the marker must be on the command line."""
    assert is_running(sleeper.pid, None, marker="time.sleep")
    assert not is_running(sleeper.pid, None, marker=MODEL_SERVER_MARKER)


def test_start_times_round_trip_through_the_state_file(tmp_path, sleeper):
    started = process_started_at(sleeper.pid)
    write_state(
        tmp_path,
        SessionState(target="emulator", stack_name="s", model_server_pid=sleeper.pid, model_server_started_at=started),
    )
    state = read_state(tmp_path)
    assert state.model_server_alive
    assert not SessionState(target="emulator", stack_name="s", owner_pid=sleeper.pid, owner_started_at=1.0).owner_alive
    assert state.stop_model_server()
    assert sleeper.wait(5) == -15
    assert not state.model_server_alive
