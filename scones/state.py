"""The state file, `<workdir>/state.json`: what `scones up`, `deploy` and `demo --keep-running` started and
where it listens, so that commands run later or in another terminal find the emulator, the model server
and the stack without being told."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "state.json"
# Looked for in a recorded pid's command line before it is signalled (the pid may have been reused).
OWNER_MARKER = "scones"  # `scones up`, `scones demo`, `python -m scones ...`
MODEL_SERVER_MARKER = "local_model.serve"  # every model server the CLI starts


@dataclass
class SessionState:
    target: str  # "emulator" or "aws"
    stack_name: str
    outputs: dict[str, str] = field(default_factory=dict)  # the stack's CloudFormation outputs
    aws_endpoint_url: str | None = None  # the emulator; None on AWS
    owner_pid: int | None = None  # the `scones up` / `demo --keep-running` process keeping the emulator alive
    model_server_url: str | None = None  # what the classifier calls instead of SageMaker (off AWS)
    model_server_pid: int | None = None  # set when a scones command started that model server
    model_server_log: str | None = None
    capture_destination: str | None = None  # where the model server writes captured inferences
    model_sha256: str | None = None  # of the model.tar.gz being served

    @property
    def owner_alive(self) -> bool:
        return self.owner_pid is not None and process_matches(self.owner_pid, OWNER_MARKER)


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


def clear_state(workdir: Path) -> None:
    state_path(workdir).unlink(missing_ok=True)


def process_command_line(pid: int) -> str | None:
    """The command line of a running process, or None if there is none (a zombie counts as gone)."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return None
            return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            return None
    try:  # no /proc (macOS)
        result = subprocess.run(["ps", "-o", "stat=,args=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return None
    stat, _, args = result.stdout.strip().partition(" ")
    return args.strip() if result.returncode == 0 and not stat.startswith("Z") else None


def process_matches(pid: int, marker: str) -> bool:
    """Whether `pid` is alive and its command line names `marker`: a pid in an old state file may have
    been reused by an unrelated process, which must never be signalled."""
    command = process_command_line(pid)
    return command is not None and marker in command


def stop_process(pid: int, marker: str, timeout_s: float = 40.0) -> bool:
    """SIGTERM `pid` if it is still the process we started (SIGKILL after `timeout_s`); True if one was
    stopped. The model server flushes captured data on SIGTERM, hence the long default."""
    if not process_matches(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while process_matches(pid, marker):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    return True
