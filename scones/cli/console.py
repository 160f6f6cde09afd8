"""`scones console`: the local web console of the deployed workflow (scones/console/)."""

from __future__ import annotations

from typing import Annotated

import typer

from cloud.defaults import DEFAULT_STACK_NAME, DEFAULT_WORKDIR
from scones.cli.common import StackName, Target, Workdir, app, recorded_state, reports_errors, say
from scones.errors import UsageProblemError
from scones.local.connection import TargetKind, connect, deployed_outputs
from scones.local.environment import check_ports_free
from scones.pipeline import steps


@app.command(
    short_help="Web console: watch executions, their graph, images, logs.",
    epilog="\b\nExamples:\n"
    "  scones console                    # while `scones up` runs (it starts one too), or with AWS_ENDPOINT_URL set\n"
    "  scones console --port 8090\n"
    "  scones console --target aws --stack-name scones   # read-only on a real account",
)
@reports_errors
def console(
    target: Target = TargetKind.emulator,
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: StackName = None,
    port: Annotated[
        int | None, typer.Option(help="port on 127.0.0.1 [default: a free one]", show_default=False)
    ] = None,
    allow_writes: Annotated[
        bool,
        typer.Option("--allow-writes", help="--target aws: offer the write actions (upload, start, run again)"),
    ] = False,
) -> None:
    """Serve a web console of the deployed workflow on 127.0.0.1 until Ctrl-C: the executions of both state
    machines, live; each execution's graph, drawn from the deployed definition, with the path it took, every
    state's input, output and error, the image with its scores, and the log lines of its correlation id; a
    batch's Map Run; the monitoring report. On an emulator it can also upload an image (the upload trigger
    starts the workflow), start an execution with a JSON input and run a failed one again; on AWS it only
    reads, unless --allow-writes."""
    from scones.console.server import ConsoleServer

    if allow_writes and target is not TargetKind.aws:
        raise UsageProblemError("--allow-writes is for --target aws; on an emulator the console can always write")
    check_ports_free(port=port)
    state = recorded_state(workdir, target)
    with connect(target, state) as connection:
        outputs = deployed_outputs(connection, stack_name, state)
        name = stack_name or (state.stack_name if state else None) or DEFAULT_STACK_NAME
        server = ConsoleServer(
            connection.aws,
            outputs,
            stack_name=name,
            target=connection.describe(),
            port=port,
            allow_writes=target is TargetKind.emulator or allow_writes,
            workdir=workdir,
            model_dir=steps.model_paths(workdir).model_dir,
        )
        with server:
            say(f"console: {server.url} (the {connection.describe()}; Ctrl-C stops it)")
            try:
                server.wait()
            except KeyboardInterrupt:
                say("stopped")
