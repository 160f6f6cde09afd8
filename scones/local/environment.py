"""A running local environment: the emulator, the model server and the deployed stack, recorded in the state
file while they run, and all stopped together (Ctrl-C, SIGTERM from `scones teardown`, or the end of the demo).
`scones up` and `scones demo` run inside one."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from scones.errors import ChildExitedError, EnvironmentProblemError, PortTakenError
from scones.local.connection import Connection
from scones.local.emulator import HOST, local_aws_environment
from scones.local.state_file import (
    CorruptStateError,
    SessionState,
    clear_state,
    process_started_at,
    read_state,
    write_state,
)
from scones.local.supervisor import is_port_free
from scones.pipeline.deployment import Deployment, DeployOptions, deploy_to_emulator, remove_stack
from scones.pipeline.steps import ModelPaths


@dataclass
class LocalEnvironment:
    connection: Connection
    deployment: Deployment
    state: SessionState


def check_no_session(workdir: Path) -> None:
    """Refuse to start a second environment over one that is still running from the same workdir."""
    state = read_state(workdir)
    if state is None:
        return
    if state.owner_alive:
        raise EnvironmentProblemError(
            f"`scones up` (pid {state.owner_pid}) is already running with workdir {workdir}: stop it (Ctrl-C there, "
            "or `scones teardown`), or pass another --workdir"
        )
    if state.model_server_alive:
        raise EnvironmentProblemError(
            f"a deployment made by `scones deploy` (model server pid {state.model_server_pid}) is recorded in "
            f"{workdir}: run `scones teardown` first, or pass another --workdir"
        )
    clear_state(workdir)  # what it recorded has stopped: forget it


def check_ports_free(**ports: int | None) -> None:
    """Fail before anything starts when a port asked for (e.g. emulator_port=4566) is taken."""
    for option, port in ports.items():
        if port and not is_port_free(HOST, port):
            flag = "--" + option.replace("_", "-")
            raise PortTakenError(
                f"port {port} on {HOST} ({flag}) is already in use: choose another, or leave {flag} unset "
                "for a free one"
            )


def stop_signals_interrupt() -> None:
    """SIGTERM (sent by `scones teardown`, or a process manager) stops like Ctrl-C: cleanup runs."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


# botocore's per-service endpoint variable for SageMaker Runtime (its service id "SageMaker Runtime"): the
# emulator has no SageMaker Runtime, the local model server is that endpoint.
SAGEMAKER_RUNTIME_ENDPOINT_VAR = "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"


def export_lines(connection: Connection, model_server_url: str | None = None) -> list[str]:
    """One line a shell can `export` to point the AWS CLI, boto3 and the SageMaker SDK at this environment:
    every service at the emulator, SageMaker Runtime (invoke-endpoint, Predictor) at the model server."""
    if connection.endpoint_url is None:
        return []
    variables = local_aws_environment(connection.endpoint_url)
    if model_server_url:
        variables[SAGEMAKER_RUNTIME_ENDPOINT_VAR] = model_server_url
    return [" ".join(f"{k}={v}" for k, v in variables.items())]


@contextlib.contextmanager
def local_environment(
    connection: Connection,
    workdir: Path,
    options: DeployOptions,
    model: ModelPaths,
    model_sha256: str,
    say: Callable[[str], None],
) -> Iterator[LocalEnvironment]:
    """Deploy with a model server and record it in the state file; on exit stop the model servers, delete
    the stack and forget the state (the caller's connection stops the emulator after)."""
    deployment = None
    try:
        deployment = deploy_to_emulator(connection, options, model, workdir, say)
        server = deployment.model_server
        state = SessionState(
            target=connection.kind.value,
            stack_name=options.stack_name,
            outputs=deployment.outputs,
            aws_endpoint_url=connection.endpoint_url,
            owner_pid=os.getpid(),
            owner_started_at=process_started_at(os.getpid()),
            model_server_url=deployment.model_server_url,
            model_server_pid=server.pid if server else None,
            model_server_started_at=process_started_at(server.pid) if server else None,
            model_server_log=str(server.log_path) if server else None,
            capture_destination=deployment.capture_destination,
            model_sha256=model_sha256,
        )
        write_state(workdir, state)
        yield LocalEnvironment(connection, deployment, state)
    finally:
        shut_down(connection, workdir, options.stack_name, deployment, say)


def shut_down(
    connection: Connection, workdir: Path, stack_name: str, deployment: Deployment | None, say: Callable[[str], None]
) -> None:
    """Model servers first (they flush captured data into the bucket), then the stack and its buckets."""
    try:
        recorded = read_state(workdir)
    except CorruptStateError as e:  # shutting down goes on: what this process started, it knows itself
        say(f"warning: {e}")
        recorded = None
    own = deployment.model_server if deployment else None
    replaced = recorded.model_server_pid if recorded else None
    # A model server `scones deploy` started while we ran, in place of ours.
    if replaced and (own is None or replaced != own.pid) and recorded.stop_model_server():
        say(f"stopped the model server {recorded.model_server_url} (pid {replaced})")
    if own is not None and own.running:
        own.stop()
        say(f"stopped the model server {own.url}")
    try:
        remove_stack(connection, stack_name, lambda line: say(f"teardown: {line}"))
    except Exception as e:  # never mask the error that brought us here; the user can run teardown again
        if connection.embedded:  # this process's emulator, which stops next: the stack goes with it
            say(f"teardown of stack {stack_name} failed ({e}); it goes with the embedded emulator, stopping now")
        else:
            say(f"teardown of stack {stack_name} failed: {e}; run `scones teardown`")
        if not connection.embedded and recorded is not None and recorded.owner_pid == os.getpid():
            # Keep the record of the stack, without this process and its model server: `scones teardown`
            # (the one that stopped us, or a later one) finds it and tries again, and says if that fails.
            write_state(workdir, orphaned(recorded))
            return
    if recorded is None or recorded.owner_pid == os.getpid():
        clear_state(workdir)


def orphaned(state: SessionState) -> SessionState:
    """The state of a stack whose `scones up` has ended without deleting it: no owner, no model server."""
    return replace(
        state,
        owner_pid=None,
        owner_started_at=None,
        model_server_url=None,
        model_server_pid=None,
        model_server_started_at=None,
    )


WATCH_INTERVAL_S = 0.5


def wait_until_interrupted(children: tuple = (), poll_s: float = WATCH_INTERVAL_S) -> None:
    """Block until Ctrl-C or SIGTERM (both raise KeyboardInterrupt here), watching `children` (supervised
    processes: scones/local/supervisor.py): one that exits ends the wait at once with ChildExitedError, naming
    it, its exit code and the end of its log; the caller's clean-up then stops the rest."""
    forever = threading.Event()
    watched = [child for child in children if child is not None]
    while True:
        for child in watched:
            if (code := child.exit_code) is not None:
                tail = child.log_tail(600).strip().splitlines()[-5:]
                raise ChildExitedError(
                    f"the {child.name} exited with code {code} (log {child.log_path}"
                    + (f": ...{' / '.join(tail)})" if tail else ")")
                    + ": everything else this command started has been stopped; run it again"
                )
        forever.wait(poll_s)
