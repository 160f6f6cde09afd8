"""The state file, `<workdir>/state.json`: what `scones up`, `deploy` and `demo --keep-running` started and
where it listens, so that commands run later or in another terminal find the emulator, the model server
and the stack without being told."""

from __future__ import annotations

import contextlib
import fcntl
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from cloud.polling import PollTimeoutError, poll

STATE_FILE = "state.json"
UPDATE_LOCK_FILE = "update.lock"
# A process is identified by its pid and its start time (psutil's create_time, 10 ms resolution on Linux).
START_TIME_TOLERANCE_S = 0.05
# Looked for in the command line of a pid recorded without a start time (state files of older versions).
OWNER_MARKER = "scones"  # `scones up`, `scones demo`, `python -m scones ...`
MODEL_SERVER_MARKER = "local_model.serve"  # every model server the CLI starts


@dataclass
class SessionState:
    target: str  # "emulator" or "aws"
    stack_name: str
    outputs: dict[str, str] = field(default_factory=dict)  # the stack's CloudFormation outputs
    aws_endpoint_url: str | None = None  # the emulator; None on AWS
    owner_pid: int | None = None  # the `scones up` / `demo --keep-running` process keeping the emulator alive
    owner_started_at: float | None = None  # with the pid, the owner's identity (process_started_at)
    model_server_url: str | None = None  # what the classifier calls instead of SageMaker (off AWS)
    model_server_pid: int | None = None  # set when a scones command started that model server
    model_server_started_at: float | None = None
    model_server_log: str | None = None
    capture_destination: str | None = None  # where the model server writes captured inferences
    model_sha256: str | None = None  # of the model.tar.gz being served

    @property
    def owner_alive(self) -> bool:
        return is_running(self.owner_pid, self.owner_started_at, OWNER_MARKER)

    @property
    def model_server_alive(self) -> bool:
        return is_running(self.model_server_pid, self.model_server_started_at, MODEL_SERVER_MARKER)

    def stop_owner(self, timeout_s: float) -> bool:
        return stop_process(self.owner_pid, self.owner_started_at, OWNER_MARKER, timeout_s)

    def stop_model_server(self) -> bool:
        return stop_process(self.model_server_pid, self.model_server_started_at, MODEL_SERVER_MARKER)


class CorruptStateError(Exception):
    """The state file exists but is not one `scones` wrote: reading it as "nothing running" could orphan a
    running `scones up`, so the commands stop and say what to do."""


def state_path(workdir: Path) -> Path:
    return Path(workdir) / STATE_FILE


def read_state(workdir: Path) -> SessionState | None:
    """The recorded session, None when there is no state file; CorruptStateError when it cannot be read
    (write_state replaces the file whole, so a broken one was not written by a scones command)."""
    path = state_path(workdir)
    try:
        raw = json.loads(path.read_text())
        known = set(SessionState.__dataclass_fields__)
        state = SessionState(**{k: v for k, v in raw.items() if k in known})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise CorruptStateError(
            f"the state file {path} cannot be read ({type(e).__name__}: {e}); a `scones up` may still be running "
            f"from {Path(workdir)}: stop it (Ctrl-C in its terminal, or find it with `pgrep -af scones`), then "
            f"delete {path}"
        ) from e
    if not isinstance(state.target, str) or not isinstance(state.stack_name, str):
        raise CorruptStateError(f"the state file {path} has no target or stack name; delete it if nothing runs")
    return state


def write_state(workdir: Path, state: SessionState) -> Path:
    path = state_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n")
    partial.replace(path)  # another terminal never reads half a file
    return path


@contextlib.contextmanager
def updating(workdir: Path):
    """One update of a running session at a time: `scones deploy` and `scones up --watch` take turns (an
    advisory lock on WORKDIR/update.lock, released when the holder exits, however it exits)."""
    path = Path(workdir) / UPDATE_LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def clear_state(workdir: Path) -> None:
    state_path(workdir).unlink(missing_ok=True)


def process_started_at(pid: int | None) -> float | None:
    """When `pid` started (seconds since the epoch, as the kernel records it), or None if no such process
    runs (a zombie counts as gone). With the pid, this is the process's identity: a pid can be reused, a
    (pid, start time) pair cannot."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_running(pid: int | None, started_at: float | None, marker: str) -> bool:
    """Whether the process recorded as (`pid`, `started_at`) still runs. A state file written before start
    times were recorded has none: then the process's command line must name `marker`."""
    now_started_at = process_started_at(pid)
    if now_started_at is None:
        return False
    if started_at is not None:
        return abs(now_started_at - started_at) < START_TIME_TOLERANCE_S
    try:
        return marker in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_process(pid: int | None, started_at: float | None, marker: str, timeout_s: float = 40.0) -> bool:
    """SIGTERM the process recorded as (`pid`, `started_at`) if it still runs (SIGKILL after `timeout_s`);
    True if one was stopped. Never signals a process that merely reuses the pid. The model server flushes
    captured data on SIGTERM, hence the long default."""
    if not is_running(pid, started_at, marker):
        return False
    process = psutil.Process(pid)
    with contextlib.suppress(psutil.NoSuchProcess):
        process.terminate()
    # Polled, not process.wait(): that would reap a child of ours and hide its exit status from its parent.
    try:
        poll(lambda: is_running(pid, started_at, marker), lambda running: not running, timeout_s=timeout_s)
    except PollTimeoutError:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return True
