"""The `scones` command line: one subcommand per step of the workflow, and `demo` for all of them."""

from __future__ import annotations

import functools
import json
import logging
import sys
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cloud.defaults import (
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_LOCAL_IMAGE,
    DEFAULT_STACK_NAME,
    DEFAULT_WORKDIR,
)
from cloud.deploy import make_client
from cloud.workflow import ExecutionResult, run_image, run_workflow
from lambdas.contract import CLASSES, DEFAULT_CONFIDENCE_THRESHOLD, WorkflowError, image_content_type
from local_model.captured import CaptureReadProblems, read_captured_inferences
from scones import steps
from scones.batch import (
    DEFAULT_CONCURRENCY,
    EXECUTION_TIMEOUT_S,
    LOW_CONFIDENCE,
    run_endpoint_batch,
    run_workflow_batch,
)
from scones.deployment import (
    CAPTURE_PREFIX,
    DeployOptions,
    deploy_to_aws,
    deploy_to_emulator,
    plan_aws,
    remove_stack,
    resolve_threshold,
)
from scones.errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    EmulatorNotRunningError,
    EmulatorUnreachableError,
    NotDeployedError,
    UsageProblemError,
    describe_error,
)
from scones.pipeline import DemoOptions, run_demo
from scones.prefix_batch import PrefixBatchError, format_summary, is_prefix_argument, parse_prefix, run_prefix_batch
from scones.report import (
    format_batch_report,
    format_captures,
    plot_batch_precision_coverage,
    plot_captures,
    summarize_batch,
    summarize_captures,
)
from scones.session import (
    check_no_session,
    check_ports_free,
    export_lines,
    local_environment,
    stop_signals_interrupt,
    wait_until_interrupted,
)
from scones.state import (
    SessionState,
    clear_state,
    process_started_at,
    read_state,
    state_path,
    write_state,
)
from scones.target import ENDPOINT_URL_VAR, TargetKind, configured_emulator, connect, deployed_outputs, service_endpoint

WORKDIR_VAR = "SCONES_WORKDIR"
OWNER_STOP_TIMEOUT_S = 120.0  # `scones up` deletes its stack before it exits: seconds on an emulator

EPILOG = f"""\
\b
Start here (no Docker, no AWS account needed):
  scones demo --data-dir ../shared/data/cifar100-bikes --quick   # whole pipeline, a few minutes
  scones demo                     # CIFAR-100 download, full training recipe, its test split

\b
Step by step, the environment kept running in a second terminal:
  scones stage --data-dir ../shared/data/cifar100-bikes
  scones train --quick
  scones up                       # emulator + model server + stack, until Ctrl-C
  scones classify photo.png       # (second terminal) one image through the workflow
  scones evaluate                 # test images: accuracy, confusion matrix, latency
  scones captures                 # what the model server captured, with a plot
  scones teardown                 # delete what was deployed, stop `scones up`

Where AWS calls go: the embedded emulator (ministack) by default; the emulator {ENDPOINT_URL_VAR} names
when it is set (LocalStack: http://127.0.0.1:4566); real AWS only with --target aws. Commands find a
running `scones up` through WORKDIR/state.json (WORKDIR: --workdir, {WORKDIR_VAR}, default {DEFAULT_WORKDIR}).

\b
Exit codes:
  {EXIT_OK}    ok
  {EXIT_FAILED}    a step failed (training, deploy, an execution of the workflow)
  {EXIT_USAGE}    usage: a bad option or argument, an unusable --data-dir
  {EXIT_ENVIRONMENT}    environment not ready: no emulator, port taken, no AWS credentials, no trained
       model, nothing deployed
  {EXIT_REJECTED}    classify: the workflow rejected the image as low confidence
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); what the command started was stopped
"""

app = typer.Typer(
    help="Scones Unlimited, local-first: a ResNet tells a bicycle from a motorcycle, and an event-driven "
    "workflow (S3, three Lambdas chained by Step Functions, a SageMaker-style model endpoint) routes delivery "
    "drivers by it, failing loudly when the model is not confident. Every step runs offline on an embedded "
    "AWS emulator.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

WORKDIR_HELP = "where staged data, the model, logs, reports and the state file are kept"
DATA_DIR_HELP = (
    "image folder to use instead of CIFAR-100: train/ (and optionally test/), each holding bicycle/ and "
    "motorcycle/, or just bicycle/ and motorcycle/; without test/, 20% is held out for testing"
)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP, show_default=False)]
DRIFT_WINDOW = 100  # inferences per window of the monitor's drift table (benchmarks/drift.py: 0.1% false alarms)
Workdir = Annotated[Path, typer.Option(help=WORKDIR_HELP, envvar=WORKDIR_VAR)]
StackName = Annotated[
    str | None,
    typer.Option(help=f"CloudFormation stack [default: the deployed one, else {DEFAULT_STACK_NAME}]"),
]
NewStackName = Annotated[str, typer.Option(help="CloudFormation stack name")]
Target = Annotated[
    TargetKind,
    typer.Option(
        help=f"emulator: the one {ENDPOINT_URL_VAR} names, else the one `scones up` runs; aws: real AWS (credentials)"
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="minimum top-class probability for an image to be routed [default: the threshold training chose on "
        f"its validation split, in model.json; {DEFAULT_CONFIDENCE_THRESHOLD} when it chose none]",
        show_default=False,
    ),
]
EmulatorPort = Annotated[
    int | None,
    typer.Option(help="port of the embedded emulator on 127.0.0.1 [default: a free one]", show_default=False),
]
ModelPort = Annotated[
    int | None, typer.Option(help="port of the model server on 127.0.0.1 [default: a free one]", show_default=False)
]
Concurrency = Annotated[int, typer.Option(min=1, max=64, help="executions in flight at once")]
Limit = Annotated[int | None, typer.Option(min=1, help="only the first N test images", show_default=False)]
Timeout = Annotated[float, typer.Option(min=1.0, help="seconds each execution may take before it is stopped")]
Quick = Annotated[bool, typer.Option("--quick", help="a few epochs only: for trying the pipeline, not for accuracy")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="hyperparameter override, repeatable (e.g. --set epochs=30)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


class Via(StrEnum):
    workflow = "workflow"
    endpoint = "endpoint"
    model = "model"


def say(line: str = "") -> None:
    typer.echo(line)


def recorded_state(workdir: Path, target: TargetKind) -> SessionState | None:
    """The session in the state file if it is on `target`: an emulator session tells nothing about AWS."""
    state = read_state(workdir)
    return state if state is not None and state.target == target.value else None


def reports_errors(command):
    """Turn the errors users meet into one line on stderr and the exit code for their kind."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:
            code, message = describe_error(e)  # re-raises what is not a known kind: a bug, with its traceback
            first, *details = message.splitlines()
            typer.secho(f"error: {first}", fg=typer.colors.RED, err=True)
            for line in details:  # a log's tail, for instance
                typer.echo(f"  {line}", err=True)
            raise typer.Exit(code) from None

    return run


@app.callback()
def main() -> None:
    # Our own modules report through `say`; warnings from the libraries underneath still reach stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@app.command(
    short_help="The whole pipeline end to end, with a report (start here).",
    epilog="\b\nExamples:\n"
    "  scones demo --data-dir ../shared/data/cifar100-bikes --quick\n"
    "  scones demo --limit 40 --concurrency 8 --keep-running\n"
    "  AWS_ENDPOINT_URL=http://127.0.0.1:4566 scones demo --quick   (LocalStack instead of the embedded emulator)",
)
@reports_errors
def demo(
    data_dir: DataDir = None,
    quick: Quick = False,
    hyperparameter: Overrides = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
    limit: Limit = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="leave everything running after the report, until Ctrl-C (as `up`)")
    ] = False,
    stack_name: NewStackName = DEFAULT_STACK_NAME,
    threshold: Threshold = None,
    emulator_port: EmulatorPort = None,
    model_port: ModelPort = None,
    timeout: Timeout = EXECUTION_TIMEOUT_S,
) -> None:
    """The whole pipeline, with a report: start the emulator, stage the images, train, start the model
    server, deploy the stack, run the workflow on every test image (a few executions at a time), report
    accuracy, routed vs rejected as low confidence, latency and captured records, then stop everything.

    Without --data-dir it downloads CIFAR-100 (checksum-verified) and uses its test split.
    """
    overrides = steps.parse_overrides(hyperparameter or [])
    steps.training_hyperparameters(quick, overrides)  # a bad --set fails now, not after the emulator started
    stop_signals_interrupt()
    check_no_session(workdir)
    check_ports_free(emulator_port=emulator_port, model_port=model_port)
    options = DemoOptions(
        workdir=workdir,
        data_dir=data_dir,
        quick=quick,
        overrides=overrides,
        deploy=DeployOptions(stack_name=stack_name, threshold=threshold, model_port=model_port),
        concurrency=concurrency,
        limit=limit,
        keep_running=keep_running,
        emulator_port=emulator_port,
        timeout_s=timeout,
    )
    say(
        "scones demo: the whole pipeline on "
        + (f"the emulator at {configured_emulator()}" if configured_emulator() else "the embedded emulator")
        + ", no Docker, no AWS account"
    )
    result = run_demo(options, say)
    if result.report.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command(
    short_help="Stage the images: CIFAR-100 download or --data-dir.",
    epilog="\b\nExamples:\n  scones stage\n  scones stage --data-dir ../shared/data/cifar100-bikes",
)
@reports_errors
def stage(data_dir: DataDir = None, workdir: Workdir = DEFAULT_WORKDIR) -> None:
    """Stage the bicycle/motorcycle images into WORKDIR/data: download CIFAR-100, or link --data-dir's images.
    Later steps use what is staged here."""
    staged = steps.stage_data(workdir, data_dir)
    say(describe_staged(staged))


def describe_staged(staged: steps.StagedData) -> str:
    counts = staged.describe()
    train, test = (sum(counts[split].values()) for split in ("train", "test"))
    held = " (held out of the training images: the folder has no test/)" if staged.test_is_holdout else ""
    return f"staged {train} training and {test} test images{held} from {staged.source} in {staged.root}"


@app.command(
    short_help="Train the model; writes WORKDIR/model/model.tar.gz.",
    epilog="\b\nExamples:\n  scones train --quick\n  scones train --set epochs=60 --set width=8",
)
@reports_errors
def train(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="stage this folder first [default: what is staged, else CIFAR-100]"),
    ] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    hyperparameter: Overrides = None,
    quick: Quick = False,
) -> None:
    """Train the ResNet on the staged training images (in-process, on the SageMaker training contract) and
    pack WORKDIR/model/model.tar.gz."""
    overrides = steps.parse_overrides(hyperparameter or [])
    steps.training_hyperparameters(quick, overrides)  # a bad --set fails before any download
    staged = steps.stage_or_reuse(workdir, data_dir)
    say(describe_staged(staged))
    say(f"training: {steps.describe_recipe(quick, overrides)}; log {steps.training_log(workdir)}")
    model = steps.train_model(workdir, staged, overrides, quick=quick)
    say(f"model: {model.tarball} (sha256 {model.sha256[:16]}) in {model.metrics['train_seconds']:.0f} s")
    validation = model.metrics.get("validation")
    if validation:
        say(f"validation accuracy {validation['accuracy']:.3f} on {validation['n_images']} images held out of training")


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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="--target aws: print the plan and the artifacts' hashes; change nothing")
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
) -> None:
    """Deploy the model endpoint and the stack (S3 bucket, three Lambdas, state machine).

    On an emulator (a running `scones up`, or AWS_ENDPOINT_URL) it starts a model server for the trained model
    in the background, with data capture to the stack's bucket, points the classifier at it, and records the
    artifacts' sha256 in WORKDIR/artifacts.json; a server from an earlier deploy is replaced.

    With --target aws it promotes exactly those artifacts (cloud/promote.py): the serving image (built from
    local_model/Dockerfile) to ECR, the same model.tar.gz, and the same template with the SageMaker endpoint,
    refusing artifacts that differ from the recorded ones. Start with --dry-run.
    """
    state = recorded_state(workdir, target)
    name = stack_name or (state.stack_name if state else None) or DEFAULT_STACK_NAME
    options = DeployOptions(
        stack_name=name,
        endpoint_name=endpoint_name,
        threshold=threshold,
        model_port=model_port,
        model_url=model_url,
        local_image=image,
        repository=repository,
        instance_type=instance_type,
        allow_untested=allow_untested,
    )
    if target is TargetKind.aws:
        deploy_aws(workdir, options, dry_run)
        return
    if dry_run:
        raise UsageProblemError("--dry-run is for --target aws; an emulator deploy costs nothing, just run it")
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


def deploy_aws(workdir: Path, options: DeployOptions, dry_run: bool) -> None:
    if options.model_url or options.model_port:
        raise UsageProblemError("--model-url and --model-port are for emulators; on AWS the endpoint is SageMaker's")
    if dry_run:
        plan, proven = plan_aws(options, workdir)
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


def say_outputs(outputs: dict[str, str]) -> None:
    width = max(map(len, outputs), default=0)
    for key, value in sorted(outputs.items()):
        say(f"  {key:<{width}}  {value}")


def indent(function, prefix: str = "  "):
    return lambda line: function(prefix + line)


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
    check_ports_free(emulator_port=emulator_port, model_port=model_port)
    options = DeployOptions(stack_name=stack_name, threshold=threshold, model_port=model_port)
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
                say("then: scones classify IMAGE.png | scones evaluate | scones captures | scones teardown")
                say("Ctrl-C stops everything.")
                ready = True
                wait_until_interrupted((connection.emulator, env.deployment.model_server))
    except KeyboardInterrupt:
        if not ready:
            raise  # interrupted while starting: exit code 130
        say("stopped")  # the normal way to end `up`: exit code 0


def parse_image_argument(image: str) -> tuple[dict | None, Path | None]:
    """`s3://bucket/key` -> (event, None); a local PNG/JPEG -> (None, path)."""
    if image.startswith("s3://"):
        bucket, _, key = image[len("s3://") :].partition("/")
        if not bucket or not key:
            raise UsageProblemError(f"{image} is not s3://BUCKET/KEY")
        return {"s3_bucket": bucket, "s3_key": key}, None
    path = Path(image)
    if not path.is_file():
        raise UsageProblemError(f"{image} is neither a file nor s3://BUCKET/KEY")
    try:
        image_content_type(path.read_bytes())
    except WorkflowError as e:
        raise UsageProblemError(f"{image}: {e}") from e
    return None, path


def describe_result(result: ExecutionResult) -> str:
    scores = result.inferences or []
    scored = ", ".join(f"{name} {p:.4f}" for name, p in zip(CLASSES, scores, strict=False))
    if result.status == "SUCCEEDED":
        return f"{result.label} ({scored}) in {result.seconds:.2f} s"
    verdict = "not routed" if result.error_name == LOW_CONFIDENCE else f"workflow {result.status}"
    return f"{verdict}: {result.error_message or result.error_name} ({result.seconds:.2f} s)"


@app.command(
    short_help="Run one image through the workflow.",
    epilog="\b\nExamples:\n"
    "  scones classify ../shared/data/cifar100-bikes/train/bicycle/bike_s_000682.png\n"
    "  scones classify s3://BUCKET/images/photo.png --json\n"
    "  scones classify s3://BUCKET/images/            every image under the prefix (Distributed Map)\n"
    "  scones classify s3://BUCKET --prefix images/ --tolerated-failure-percentage 5",
)
@reports_errors
def classify(
    image: Annotated[
        str,
        typer.Argument(
            metavar="IMAGE",
            help="a local PNG/JPEG (uploaded to the stack's bucket), s3://BUCKET/KEY, or s3://BUCKET/PREFIX/ "
            "(a trailing slash: every object under the prefix, by the batch state machine)",
        ),
    ],
    target: Target = TargetKind.emulator,
    workdir: Workdir = DEFAULT_WORKDIR,
    stack_name: StackName = None,
    timeout: Timeout = EXECUTION_TIMEOUT_S,
    as_json: AsJson = False,
    start_execution: Annotated[
        bool,
        typer.Option(
            "--start-execution",
            help="call StartExecution instead of following the execution the upload trigger starts "
            "(the default where the stack has the trigger)",
        ),
    ] = False,
    prefix: Annotated[
        str | None, typer.Option(help="with s3://BUCKET: classify every object under this prefix (the batch)")
    ] = None,
    tolerated_failure_percentage: Annotated[
        float | None,
        typer.Option(min=0.0, max=100.0, help="batch: fail it when more items fail [default: the state machine's, 10]"),
    ] = None,
    batch_timeout: Annotated[
        float, typer.Option(min=1.0, help="batch: seconds the whole batch may take before it is stopped")
    ] = 3600.0,
) -> None:
    """Run one image through the deployed Step Functions workflow and print the class and scores, or the
    named failure (LowConfidenceError: exit code 4; any other failure: 1). With s3://BUCKET/PREFIX/ (or
    --prefix), run the batch state machine over every object there and print its summary per class
    (written to s3://BUCKET/batch-summaries/; exit code 1 if more items failed than tolerated)."""
    if prefix is not None or is_prefix_argument(image):
        classify_prefix(
            image, prefix, target, workdir, stack_name, tolerated_failure_percentage, batch_timeout, as_json
        )
        return
    event, path = parse_image_argument(image)
    state = recorded_state(workdir, target)
    with connect(target, state) as connection:
        outputs = deployed_outputs(connection, stack_name, state)
        if path is not None:
            result = run_image(
                path, outputs, session=connection.session, timeout_s=timeout, start_execution=start_execution
            )
        else:
            result = run_workflow(event, outputs, session=connection.session, timeout_s=timeout)
    say(json.dumps({"image": image, **result.summary()}) if as_json else f"{image}: {describe_result(result)}")
    if result.status != "SUCCEEDED":
        raise typer.Exit(EXIT_REJECTED if result.error_name == LOW_CONFIDENCE else EXIT_FAILED)


def classify_prefix(
    argument: str,
    prefix: str | None,
    target: TargetKind,
    workdir: Path,
    stack_name: str | None,
    tolerated_failure_percentage: float | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """`scones classify s3://BUCKET/PREFIX/`: the orchestration is in scones/prefix_batch.py."""
    try:
        bucket, key_prefix = parse_prefix(argument, prefix)
    except PrefixBatchError as e:
        raise UsageProblemError(str(e)) from e
    state = recorded_state(workdir, target)
    with connect(target, state) as connection:
        outputs = deployed_outputs(connection, stack_name, state)
        result = run_prefix_batch(
            connection.session,
            outputs,
            bucket,
            key_prefix,
            tolerated_failure_percentage=tolerated_failure_percentage,
            timeout_s=timeout_s,
            show_progress=not as_json,
        )
    say(json.dumps(result.to_dict()) if as_json else format_summary(result))
    if result.status != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)


@app.command(
    short_help="Test images: accuracy, confusion matrix, latency.",
    epilog="\b\nExamples:\n"
    "  scones evaluate                        the test images through the workflow\n"
    "  scones evaluate --via endpoint --concurrency 8\n"
    "  scones evaluate --via model            in-process, nothing deployed",
)
@reports_errors
def evaluate(
    via: Annotated[
        Via,
        typer.Option(
            help="workflow: executions of the deployed state machine; endpoint: straight to the model endpoint; "
            "model: the trained model in-process (nothing deployed)"
        ),
    ] = Via.workflow,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="stage this folder first [default: what is staged]")
    ] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    target: Target = TargetKind.emulator,
    stack_name: StackName = None,
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
    limit: Limit = None,
    timeout: Timeout = EXECUTION_TIMEOUT_S,
    as_json: AsJson = False,
) -> None:
    """Evaluate on the staged test images (the held-out part when the folder had no test split): accuracy,
    confusion matrix, latency p50/p99, routed vs rejected as low confidence."""
    staged = steps.stage_data(workdir, data_dir) if data_dir else steps.require_staged(workdir)
    if via is Via.model:
        chosen = resolve_threshold(None, steps.model_paths(workdir).model_dir)
        report = steps.evaluate_model(workdir, staged, chosen, Path(workdir) / "reports" / "precision-coverage.png")
        say(json.dumps(report) if as_json else steps.format_evaluation(report))
        return
    images = staged.test_images()[:limit] if limit else staged.test_images()
    state = recorded_state(workdir, target)
    with connect(target, state) as connection:
        outputs = deployed_outputs(connection, stack_name, state)
        threshold = float(outputs.get("ConfidenceThreshold", DEFAULT_CONFIDENCE_THRESHOLD))
        if via is Via.workflow:
            outcomes = run_workflow_batch(
                connection.session, outputs, images, concurrency=concurrency, timeout_s=timeout
            )
        else:
            model_url = state.model_server_url if state else None
            if connection.kind is TargetKind.emulator and not model_url:
                raise NotDeployedError(
                    "no model server is recorded in the state file: run `scones deploy` or `scones up`"
                )
            with service_endpoint("SAGEMAKER_RUNTIME", model_url):
                runtime = make_client(connection.session, "sagemaker-runtime")
            outcomes = run_endpoint_batch(runtime, outputs["ModelEndpointName"], images, threshold, concurrency)
    report = summarize_batch(outcomes, threshold, via.value)
    report.threshold_source = "the deployed stack's ConfidenceThreshold output"
    what = "held-out images" if staged.test_is_holdout else "test images"
    curve = plot_batch_precision_coverage(
        outcomes, threshold, Path(workdir) / "reports" / "precision-coverage.png", f"evaluate via {via.value}, {what}"
    )
    report.extra["precision_coverage_plot"] = str(curve) if curve else None
    say(json.dumps(report.to_dict()) if as_json else format_batch_report(report, what))
    if curve and not as_json:
        say(f"  curve         {curve} (routed precision against coverage, the threshold marked)")
    if report.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command(
    short_help="Captured inferences: summary and PNG plot.",
    epilog="\b\nExamples:\n"
    "  scones captures\n"
    "  scones captures --source s3://BUCKET/data-capture --plot captures.png\n"
    "  scones captures --source ./captured   (a folder the model server captured into)",
)
@reports_errors
def captures(
    source: Annotated[
        str | None,
        typer.Option(help="s3://BUCKET/PREFIX or a folder [default: where the deployed model server captures]"),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG to draw [default: WORKDIR/reports/captures.png]")] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="mark this probability [default: the stack's threshold]")
    ] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    target: Target = TargetKind.emulator,
    stack_name: StackName = None,
    as_json: AsJson = False,
) -> None:
    """Show the captured inferences (SageMaker data-capture format): count, class distribution, confidence
    histogram, as text and as a PNG plot; what could not be read and what the model server dropped.
    `scones monitor` draws the full report."""
    plot_path = plot or Path(workdir) / "reports" / "captures.png"
    read = read_captures(source, workdir, target, stack_name)
    summary = summarize_captures(read.records, read.source)
    threshold = read.threshold if threshold is None else threshold
    drawn = plot_captures(summary, threshold, plot_path) if summary.count else None
    losses = {"unreadable": read.problems.to_dict(), "dropped": read.dropped}
    if as_json:
        say(json.dumps({**summary.__dict__, **losses, "threshold": threshold, "plot": str(drawn) if drawn else None}))
        return
    say(format_captures(summary, threshold, drawn))
    say(f"  not readable  {read.problems.describe()}")
    say(f"  dropped       {'not known (no running model server)' if read.dropped is None else read.dropped}")


@dataclass
class ReadCaptures:
    records: list
    source: str
    threshold: float  # the stack's, else the default
    problems: CaptureReadProblems
    dropped: int | None  # what the session's running model server reports as dropped


def read_captures(source: str | None, workdir: Path, target: TargetKind, stack_name: str | None) -> ReadCaptures:
    """Every captured record under `source` (default: the deployed stack's capture location), with what
    could not be read counted, and the drop count of the session's model server when it runs."""
    state = recorded_state(workdir, target)
    recorded = state.outputs if state else {}
    problems = CaptureReadProblems()
    if source and not source.startswith("s3://"):
        records = list(read_captured_inferences(source, problems=problems))
    else:
        with connect(target, state) as connection:
            if source is None:
                recorded = deployed_outputs(connection, stack_name, state)
                source = f"s3://{recorded['ImageBucketName']}/{CAPTURE_PREFIX}"
            records = list(read_captured_inferences(source, problems=problems))
    threshold = float(recorded.get("ConfidenceThreshold", DEFAULT_CONFIDENCE_THRESHOLD))
    return ReadCaptures(records, source, threshold, problems, model_server_dropped(state))


def model_server_dropped(state: SessionState | None) -> int | None:
    """capture.records_dropped on the running model server's /ping, or None when none answers."""
    url = state.model_server_url if state else None
    if not url:
        return None
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            capture = json.loads(response.read() or b"{}").get("capture")
    except (OSError, ValueError):
        return None
    return capture.get("records_dropped") if isinstance(capture, dict) else None


@app.command(
    short_help="Monitoring report: pictures, HTML page, drift.",
    epilog="\b\nExamples:\n"
    "  scones monitor\n"
    "  scones monitor --source s3://BUCKET/data-capture --out report/\n"
    "  scones monitor --source ./captured --baseline .scones/model/model.tar.gz",
)
@reports_errors
def monitor(
    source: Annotated[
        str | None,
        typer.Option(help="s3://BUCKET/PREFIX or a folder [default: where the deployed model server captures]"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the report [default: WORKDIR/reports/monitor]")] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="mark this probability [default: the stack's threshold]")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="model folder, model.tar.gz or baseline.json [default: the trained model in WORKDIR]"),
    ] = None,
    window: Annotated[int, typer.Option(min=1, help="inferences per drift window")] = DRIFT_WINDOW,
    workdir: Workdir = DEFAULT_WORKDIR,
    target: Target = TargetKind.emulator,
    stack_name: StackName = None,
    as_json: AsJson = False,
) -> None:
    """Write the monitoring report of the captured inferences: top-class probability over time against the
    threshold, classes over time, the lowest-confidence inputs, and drift against the model's training
    baseline (baseline.json), as PNGs and one HTML page."""
    from scones.monitor_report import collect, drift_section, format_monitor, write_report

    read = read_captures(source, workdir, target, stack_name)
    data = collect(read.records, read.source, read.threshold if threshold is None else threshold, read.problems)
    data.dropped = read.dropped
    model_dir = steps.model_paths(workdir).model_dir
    data.drift = drift_section(data, baseline or (model_dir if model_dir.is_dir() else None), window)
    page = write_report(data, out or Path(workdir) / "reports" / "monitor")
    say(json.dumps({**data.summary(), "report": str(page)}) if as_json else format_monitor(data, page))


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
            remove_stack(connection, name, indent(say), repository=repository)
            say(f"stack {name} is gone from the {connection.describe()}")
    except (EmulatorNotRunningError, EmulatorUnreachableError) as e:
        if configured_emulator():
            raise
        say(f"the recorded emulator has stopped, and its stack with it ({e})")
    if recorded is not None:
        clear_state(workdir)


@app.command(
    short_help="Serve the model alone (no stack), for trying by hand.",
    epilog="\b\nExample:\n  scones serve --port 8080   then: curl -s http://127.0.0.1:8080/ping",
)
@reports_errors
def serve(
    workdir: Workdir = DEFAULT_WORKDIR,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8080,
) -> None:
    """Serve the trained model on the SageMaker inference contract (foreground; Ctrl-C stops). No capture, no
    stack: for trying the endpoint by hand."""
    from local_model import serve as server

    paths = steps.require_model(workdir)
    sys.exit(server.main(["--model-dir", str(paths.model_dir), "--host", "127.0.0.1", "--port", str(port)]))


if __name__ == "__main__":
    app()
