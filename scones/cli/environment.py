"""The commands that deploy and remove the environment: `deploy` (emulator, or promotion to AWS), `up`,
`teardown`, and `outputs` and `artifacts` to look at what is deployed and what would be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cloud.artifacts import build_artifacts
from cloud.defaults import (
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_LOCAL_IMAGE,
    DEFAULT_STACK_NAME,
    DEFAULT_WORKDIR,
)
from cloud.guardrails import LOW_CONFIDENCE_RATE, Guardrails
from scones.cli.common import (
    AsJson,
    EmulatorPort,
    ModelPort,
    NewStackName,
    SourceDir,
    StackName,
    Target,
    Threshold,
    Workdir,
    app,
    indent,
    recorded_state,
    reports_errors,
    say,
    say_outputs,
    source_tree,
)
from scones.cli.rollout import deploy_version
from scones.console.server import console_beside
from scones.errors import (
    EXIT_FAILED,
    EmulatorNotRunningError,
    EmulatorUnreachableError,
    UsageProblemError,
)
from scones.local.connection import ENDPOINT_URL_VAR, TargetKind, configured_emulator, connect, deployed_outputs
from scones.local.debugging import DEFAULT_DEBUG_PORT, Debugged, enable_debugging
from scones.local.environment import (
    check_no_session,
    check_ports_free,
    export_lines,
    local_environment,
    stop_signals_interrupt,
    wait_until_interrupted,
)
from scones.local.state_file import (
    SessionState,
    clear_state,
    process_started_at,
    state_path,
    updating,
    write_state,
)
from scones.local.watcher import watch_session
from scones.pipeline import steps
from scones.pipeline.deployment import (
    DeployOptions,
    deploy_to_aws,
    deploy_to_emulator,
    plan_aws,
    redeploy_into_session,
    remove_stack,
)
from scones.workflow.invoke import handler_of

OWNER_STOP_TIMEOUT_S = 120.0  # `scones up` deletes its stack before it exits: seconds on an emulator


@app.command(
    short_help="Deploy the model endpoint and the stack.",
    epilog="\b\nExamples:\n"
    "  scones deploy                   # while `scones up` runs, or with AWS_ENDPOINT_URL set\n"
    "  AWS_ENDPOINT_URL=http://127.0.0.1:4566 scones deploy --model-url http://model:8080   # docker compose\n"
    "  scones deploy --target aws --dry-run   # what would be created; are these the tested artifacts?\n"
    "  scones deploy --target aws             # push the image to ECR, deploy with the SageMaker endpoint",
)
@reports_errors
def deploy(
    target: Target = TargetKind.emulator,
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: StackName = None,
    endpoint_name: Annotated[str, typer.Option(help="SageMaker endpoint name")] = DEFAULT_ENDPOINT_NAME,
    threshold: Threshold = None,
    model_port: ModelPort = None,
    model_url: Annotated[
        str | None,
        typer.Option(help="use this running model server instead of starting one (docker compose: http://model:8080)"),
    ] = None,
    model_image: Annotated[
        str | None,
        typer.Option(
            help="with --model-url: the local image that server runs (docker compose: scones-model:latest); its ID "
            "is recorded in WORKDIR/artifacts.json, so the promotion proves it ships that image"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="--target aws: print the plan and the artifacts' hashes; change nothing")
    ] = False,
    lookup: Annotated[
        bool,
        typer.Option("--lookup", help="--dry-run: read the account, stack and repository from AWS (read-only calls)"),
    ] = False,
    image: Annotated[str, typer.Option(help="--target aws: the local serving image to push")] = DEFAULT_LOCAL_IMAGE,
    repository: Annotated[str, typer.Option(help="--target aws: ECR repository [default: STACK-model]")] = "",
    instance_type: Annotated[
        str, typer.Option(help="--target aws: the endpoint's instance type")
    ] = DEFAULT_INSTANCE_TYPE,
    allow_untested: Annotated[
        bool,
        typer.Option("--allow-untested", help="--target aws: promote artifacts that differ from the emulator's"),
    ] = False,
    source_dir: SourceDir = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="while `scones up` runs: ship this model version (`scones models`) to its endpoint as a new "
            "production variant, watched by the rollback alarms",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        float | None,
        typer.Option(min=1, max=100, help="--model: the share of traffic (percent) it gets first [default: 100]"),
    ] = None,
    bake: Annotated[
        float, typer.Option(min=0, help="--model: seconds the new variant is watched before the rest shifts")
    ] = 30.0,
    alarm_low_confidence_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="--model: roll back when more than this share of the new variant's answers is under the threshold "
            "(the template's LowConfidenceAlarmRate)",
        ),
    ] = LOW_CONFIDENCE_RATE,
) -> None:
    """Deploy the model endpoint and the stack (S3 bucket, three Lambdas, state machine).

    While `scones up` runs, it updates the stack `up` owns and keeps `up`'s model server, which reloads the model
    in place when it changed (no second server, no restart; `up` keeps running). On another emulator
    (AWS_ENDPOINT_URL) it starts a model server for the trained model in the background, with data capture to
    the stack's bucket, points the classifier at it, and records the artifacts' sha256 in
    WORKDIR/artifacts.json; a server from an earlier deploy is replaced.

    With --target aws it promotes exactly those artifacts (cloud/promote.py): the serving image (built from
    local_model/Dockerfile) to ECR, the same model.tar.gz, and the same template with the SageMaker endpoint,
    refusing artifacts that differ from the recorded ones. Start with --dry-run.

    With --model VERSION (while `scones up` runs) it ships a model version to the running endpoint as
    SageMaker's deployment guardrails do: --canary PERCENT of the traffic to it, --bake SECONDS watching its
    low-confidence rate, error rate and p99 latency (the template's alarms), then the rest, or a rollback by
    itself (exit 1). Without --canary, all traffic at once, still watched.
    """
    if model is not None:
        if target is TargetKind.aws:
            raise UsageProblemError(
                "--model is rehearsed locally; on AWS the template's DeploymentConfig rolls a new model out "
                "(docs/rollout.md)"
            )
        deploy_version(workdir, model, canary, bake, Guardrails(low_confidence_rate=alarm_low_confidence_rate))
        return
    if canary is not None:
        raise UsageProblemError("--canary goes with --model VERSION")
    state = recorded_state(workdir, target)
    name = stack_name or (state.stack_name if state else None) or DEFAULT_STACK_NAME
    options = DeployOptions(
        stack_name=name,
        endpoint_name=endpoint_name,
        threshold=threshold,
        model_port=model_port,
        model_url=model_url,
        model_image=model_image,
        local_image=image,
        repository=repository,
        instance_type=instance_type,
        allow_untested=allow_untested,
        sources=source_tree(source_dir),
    )
    if target is TargetKind.aws:
        deploy_aws(workdir, options, dry_run, lookup)
        return
    if dry_run or lookup:
        raise UsageProblemError("--dry-run is for --target aws; an emulator deploy costs nothing, just run it")
    if model_image and not model_url:
        raise UsageProblemError("--model-image names the image the --model-url server runs; give both")
    if state is not None and state.owner_alive:
        redeploy_into_up(workdir, options, state)
        return
    paths = steps.model_paths(workdir) if model_url else steps.require_model(workdir)
    check_ports_free(model_port=model_port)
    with connect(TargetKind.emulator, state) as connection:
        say(f"deploying stack {name} to the {connection.describe()}")
        same_emulator = state is not None and state.aws_endpoint_url == connection.endpoint_url
        previous = state if same_emulator else None
        deployment = deploy_to_emulator(connection, options, paths, workdir, indent(say))
        server = deployment.model_server
        replaced = previous.model_server_pid if previous else None
        if replaced and (server is None or replaced != server.pid) and previous.stop_model_server():
            say(f"  stopped the previous model server {previous.model_server_url} (pid {replaced})")
        write_state(
            workdir,
            SessionState(
                target=TargetKind.emulator.value,
                stack_name=name,
                outputs=deployment.outputs,
                aws_endpoint_url=connection.endpoint_url,
                owner_pid=previous.owner_pid if previous else None,
                owner_started_at=previous.owner_started_at if previous else None,
                model_server_url=deployment.model_server_url,
                model_server_pid=server.pid if server else None,
                model_server_started_at=process_started_at(server.pid) if server else None,
                model_server_log=str(server.log_path) if server else None,
                capture_destination=deployment.capture_destination,
                model_sha256=steps.sha256_of(paths.tarball) if paths.tarball.is_file() else None,
            ),
        )
    say_outputs(deployment.outputs)
    if server is not None:
        say(f"model server {server.url} (pid {server.pid}, log {server.log_path}) keeps running in the background")
        say("`scones teardown` stops it and deletes the stack")


def redeploy_into_up(workdir: Path, options: DeployOptions, session: SessionState) -> None:
    """`scones deploy` while `scones up` runs: the stack and the model server are up's; update them in place."""
    if options.model_url or options.model_port or options.model_image:
        raise UsageProblemError(
            f"`scones up` (pid {session.owner_pid}) runs the model server at {session.model_server_url}: "
            "--model-url, --model-port and --model-image do not apply while it runs (stop it to choose another)"
        )
    if options.stack_name != session.stack_name:
        raise UsageProblemError(
            f"`scones up` (pid {session.owner_pid}) owns stack {session.stack_name}: deploy that one "
            f"(--stack-name {options.stack_name} names another), or stop `scones up` first"
        )
    paths = steps.require_model(workdir)
    with updating(workdir), connect(TargetKind.emulator, session) as connection:
        if connection.endpoint_url != session.aws_endpoint_url:
            raise UsageProblemError(
                f"{ENDPOINT_URL_VAR} names {connection.endpoint_url}, but `scones up` (pid {session.owner_pid}) runs "
                f"on {session.aws_endpoint_url}: unset it to update up's stack, or pass another --workdir"
            )
        say(f"updating stack {session.stack_name} of `scones up` (pid {session.owner_pid}) on {connection.describe()}")
        updated = redeploy_into_session(connection, options, paths, workdir, session, indent(say))
        # `up` may have ended meanwhile: then its state is gone, and must not come back.
        if recorded_state(workdir, TargetKind.emulator) is not None:
            write_state(workdir, updated)
    say_outputs(updated.outputs)
    say(f"`scones up` keeps running; its model server is still {session.model_server_url}")


def deploy_aws(workdir: Path, options: DeployOptions, dry_run: bool, lookup: bool) -> None:
    if options.model_url or options.model_port or options.model_image:
        raise UsageProblemError(
            "--model-url, --model-port and --model-image are for emulators; on AWS the endpoint is SageMaker's "
            "(--image names the image to push)"
        )
    if lookup and not dry_run:
        raise UsageProblemError("--lookup goes with --dry-run")
    if dry_run:
        plan, proven = plan_aws(options, workdir, lookup)
        say(plan)
        if not (proven or options.allow_untested):
            raise typer.Exit(EXIT_FAILED)
        return
    steps.require_model(workdir)
    with connect(TargetKind.aws) as connection:
        say(f"promoting stack {options.stack_name} to {connection.describe()} (the endpoint takes minutes)")
        deployment = deploy_to_aws(connection, options, workdir, indent(say))
    # No state file: on AWS the stack is found by name (--stack-name), and the emulator's session stays.
    say_outputs(deployment.outputs)


@app.command(
    short_help="Run emulator, model server and stack until Ctrl-C.",
    epilog="\b\nExamples:\n  scones up\n  scones up --emulator-port 4567 --model-port 8080",
)
@reports_errors
def up(
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: NewStackName = DEFAULT_STACK_NAME,
    threshold: Threshold = None,
    emulator_port: EmulatorPort = None,
    model_port: ModelPort = None,
    source_dir: SourceDir = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="apply edits of lambdas/, statemachine/, cloud/template.yaml and the model's tarball to the running "
            "stack as they are saved, with the least work; a broken edit is reported and not applied",
        ),
    ] = False,
    debug: Annotated[
        str | None,
        typer.Option(
            help="FUNCTION: make it wait for a debugger (debugpy on 127.0.0.1:--debug-port; VS Code: attach) at each "
            "invocation, then stop at the breakpoints set in its source files",
            show_default=False,
        ),
    ] = None,
    debug_port: Annotated[int, typer.Option(help="--debug: the debugger's port on 127.0.0.1")] = DEFAULT_DEBUG_PORT,
) -> None:
    """Start the embedded emulator and the model server, deploy the stack, and stay in the foreground until
    Ctrl-C (the embedded `docker compose up`). Needs a trained model (`scones train`).

    It writes WORKDIR/state.json, through which classify, evaluate, captures, deploy and teardown run in
    other terminals find it, and prints the `export AWS_ENDPOINT_URL=...` line for the AWS CLI and boto3.
    With AWS_ENDPOINT_URL set, it uses that emulator instead of starting one.
    """
    stop_signals_interrupt()
    paths = steps.require_model(workdir)
    check_no_session(workdir)
    check_ports_free(emulator_port=emulator_port, model_port=model_port, debug_port=debug_port if debug else None)
    debugged = Debugged(handler_of(debug), debug_port) if debug else None
    options = DeployOptions(
        stack_name=stack_name, threshold=threshold, model_port=model_port, sources=source_tree(source_dir)
    )
    ready = False
    try:
        with connect(TargetKind.emulator, start_embedded=True, emulator_port=emulator_port) as connection:
            say(f"emulator: {connection.describe()}")
            sha256 = steps.sha256_of(paths.tarball)
            say(f"deploying stack {stack_name} with the model {paths.tarball} (sha256 {sha256[:12]})")
            with local_environment(connection, workdir, options, paths, sha256, indent(say)) as env:
                say_outputs({**env.deployment.outputs, "ModelServerUrl": env.deployment.model_server_url})
                say(f"up: state in {state_path(workdir)}. For the AWS CLI, boto3 or the SageMaker SDK elsewhere:")
                for line in export_lines(connection, env.deployment.model_server_url):
                    say(f"  export {line}")
                with console_beside(connection, env.deployment.outputs, stack_name, workdir) as console:
                    say(f"console: {console.url} (executions, their graph and path, images, logs)")
                    say("then: scones classify IMAGE.png | scones evaluate | scones captures | scones teardown")
                    if debugged is not None:
                        function = enable_debugging(
                            connection.aws, stack_name, debugged.handler, debugged.port, options.sources
                        )
                        say(
                            f"debug: {function} waits for a debugger at each invocation: attach to "
                            f"127.0.0.1:{debug_port} (debugpy; VS Code: a 'debugpy' attach configuration); "
                            f"breakpoints in {options.sources.lambdas_dir / debugged.handler}.py hit"
                        )
                    watcher = None
                    if watch:
                        server = env.deployment.model_server
                        watcher = watch_session(connection, options, workdir, server, say, debugged).start()
                        say(f"watching {', '.join(map(str, watcher.folders))} for changes")
                    say("Ctrl-C stops everything.")
                    ready = True
                    try:
                        wait_until_interrupted((connection.emulator, env.deployment.model_server))
                    finally:
                        if watcher is not None:
                            watcher.stop()
    except KeyboardInterrupt:
        if not ready:
            raise  # interrupted while starting: exit code 130
        say("stopped")  # the normal way to end `up`: exit code 0


@app.command(
    short_help="Delete everything deployed; stop what runs.",
    epilog="\b\nExamples:\n"
    "  scones teardown\n"
    "  scones teardown --target aws --stack-name scones    (the SageMaker endpoint too)",
)
@reports_errors
def teardown(
    target: Target = TargetKind.emulator,
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: StackName = None,
    repository: Annotated[
        str, typer.Option(help="--target aws: ECR repository the images were pushed to [default: STACK-model]")
    ] = "",
    keep_repository: Annotated[
        bool, typer.Option("--keep-repository", help="--target aws: keep the ECR repository (its pushed images go)")
    ] = False,
) -> None:
    """Delete everything deployed: the stack (SageMaker endpoint included on AWS), the image bucket's objects,
    the artifact bucket; stop the model server; stop a running `scones up` with its emulator; forget the state.
    Safe to run twice."""
    recorded = recorded_state(workdir, target)
    if recorded is not None and recorded.owner_alive and not stack_name:
        say(f"stopping `scones up` (pid {recorded.owner_pid}): it deletes the stack, then stops its servers")
        recorded.stop_owner(timeout_s=OWNER_STOP_TIMEOUT_S)
        recorded = recorded_state(workdir, target)  # `up` forgets the state once it has deleted the stack
        if recorded is None:
            say("done")
            return
        say(f"`scones up` ended without deleting stack {recorded.stack_name}: trying again")
    if recorded and recorded.stop_model_server():
        say(f"stopped the model server {recorded.model_server_url} (pid {recorded.model_server_pid})")
    if target is TargetKind.emulator and recorded is None and not configured_emulator():
        say(f"nothing to tear down: no emulator deployment recorded in {workdir}, and {ENDPOINT_URL_VAR} is not set")
        return
    name = stack_name or (recorded.stack_name if recorded else None) or DEFAULT_STACK_NAME
    try:
        with connect(target, recorded) as connection:
            remove_stack(connection, name, indent(say), repository=repository, keep_repository=keep_repository)
            say(f"stack {name} is gone from the {connection.describe()}")
    except (EmulatorNotRunningError, EmulatorUnreachableError) as e:
        if configured_emulator():
            raise
        say(f"the recorded emulator has stopped, and its stack with it ({e})")
    if recorded is not None:
        clear_state(workdir)


@app.command(
    short_help="The deployed stack's outputs.",
    epilog="\b\nExamples:\n  scones outputs\n  scones outputs --target aws --stack-name scones --json",
)
@reports_errors
def outputs(
    target: Target = TargetKind.emulator,
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: StackName = None,
    as_json: AsJson = False,
) -> None:
    """Print the outputs of the deployed stack: its buckets, state machines, functions, endpoint name."""
    state = recorded_state(workdir, target)
    with connect(target, state) as connection:
        found = deployed_outputs(connection, stack_name, state)
    if as_json:
        say(json.dumps(found, indent=2, sort_keys=True))
    else:
        say_outputs(found)


@app.command(
    short_help="The artifacts a deploy ships, with their sha256.",
    epilog="\b\nExamples:\n  scones artifacts\n  scones artifacts --json",
)
@reports_errors
def artifacts(workdir: Workdir = DEFAULT_WORKDIR, as_json: AsJson = False) -> None:
    """Build the artifacts a deploy uploads (the Lambda zips, the state machine definitions, the trained
    model.tar.gz when there is one) and print each one's content-addressed key and sha256. Nothing is
    uploaded; `scones deploy` records the same hashes in WORKDIR/artifacts.json."""
    tarball = steps.model_paths(workdir).tarball
    built = build_artifacts(tarball if tarball.is_file() else None)
    listed = {parameter: {"key": a.key, "sha256": a.sha256, "bytes": len(a.data)} for parameter, a in built.items()}
    if as_json:
        say(json.dumps(listed, indent=2))
        return
    width = max(map(len, listed))
    for parameter, artifact in listed.items():
        sha256, size = artifact["sha256"][:16], artifact["bytes"]
        say(f"  {parameter:<{width}}  sha256 {sha256}  {size:>9} bytes  {artifact['key']}")
