"""The commands that make and serve the model: `demo` (the whole pipeline), `stage`, `train`, `serve`, `models`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from cloud.defaults import (
    DEFAULT_STACK_NAME,
    DEFAULT_WORKDIR,
)
from scones.cli.common import (
    AsJson,
    Concurrency,
    DataDir,
    EmulatorPort,
    Limit,
    ModelPort,
    NewStackName,
    Overrides,
    Quick,
    Threshold,
    Timeout,
    Workdir,
    app,
    reports_errors,
    say,
)
from scones.errors import (
    EXIT_FAILED,
    UsageProblemError,
)
from scones.local.connection import configured_emulator
from scones.local.environment import (
    check_no_session,
    check_ports_free,
    stop_signals_interrupt,
)
from scones.pipeline import registry, steps
from scones.pipeline.demo import DemoOptions, run_demo
from scones.pipeline.deployment import (
    DeployOptions,
)
from scones.workflow.batch import (
    DEFAULT_CONCURRENCY,
    EXECUTION_TIMEOUT_S,
)


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
    say(f"registered as model version {model.sha256[: registry.SHORT_ID]} (`scones models` lists the versions)")
    say(steps.describe_trained(model, steps.require_model(workdir).model_dir))


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


@app.command(
    short_help="The model versions kept in WORKDIR/models; set champion/challenger.",
    epilog="\b\nExamples:\n"
    "  scones models\n"
    "  scones models --set challenger 3f2a9c01\n"
    "  scones models --register elsewhere/model.tar.gz",
)
@reports_errors
def models(
    workdir: Workdir = DEFAULT_WORKDIR,
    set_alias: Annotated[
        tuple[str, str] | None,
        typer.Option("--set", metavar="ALIAS VERSION", help="point champion or challenger at VERSION (id prefix)"),
    ] = None,
    unset: Annotated[str | None, typer.Option(help="remove the alias champion or challenger")] = None,
    register: Annotated[
        Path | None, typer.Option(help="keep this model.tar.gz as a version (trained elsewhere)", show_default=False)
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List the model versions (each model `train` made, or `deploy` deployed): id (sha256 of model.tar.gz),
    aliases, validation accuracy, confidence threshold, hash of the training images. On AWS the same versions
    are a SageMaker Model Package Group (docs/rollout.md)."""
    if register is not None:
        if not register.is_file():
            raise UsageProblemError(f"--register: no file {register}")
        version = registry.register_model(workdir, register, source="register")
        say(f"registered {register} as model version {version.short_id}")
    if set_alias is not None:
        alias, name = set_alias
        version = registry.set_alias(workdir, alias, name)
        say(f"{alias} is now model version {version.short_id}")
    if unset is not None:
        registry.set_alias(workdir, unset, None)
        say(f"no model is the {unset} now")
    found = registry.read_registry(workdir)
    if as_json:
        say(json.dumps({"versions": {k: asdict(v) for k, v in found.versions.items()}, "aliases": found.aliases}))
        return
    if not found.versions:
        say(f"no model versions in {registry.registry_dir(workdir)}: `scones train` registers each model it trains")
        return
    for line in registry.format_versions(found):
        say(line)
