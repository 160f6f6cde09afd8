"""The `scones` command line: one subcommand per step of the workflow, and `demo` for all of them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from scones import steps

app = typer.Typer(
    help="Scones Unlimited, local-first: stage CIFAR-100 bikes, train, serve and run the classification "
    "workflow on an embedded AWS emulator, LocalStack or AWS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

WORKDIR_HELP = "where staged data, models and state are kept"
DATA_DIR_HELP = (
    "use this image folder (with train/ and optionally test/, each holding bicycle/ and motorcycle/) "
    "instead of downloading CIFAR-100"
)


DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
Workdir = Annotated[Path, typer.Option(help=WORKDIR_HELP)]
DEFAULT_WORKDIR = Path(".scones")


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def stage(
    data_dir: DataDir = None,
    workdir: Workdir = DEFAULT_WORKDIR,
) -> None:
    """Stage the bicycle/motorcycle images (download CIFAR-100, or check --data-dir)."""
    try:
        staged = steps.stage_data(workdir, data_dir)
    except steps.StepError as e:
        fail(str(e))
    typer.echo(json.dumps(staged.describe(), indent=2))


@app.command()
def train(
    data_dir: DataDir = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    hyperparameter: Annotated[
        list[str] | None, typer.Option("--set", help="hyperparameter override KEY=VALUE (repeatable)")
    ] = None,
    quick: Annotated[bool, typer.Option(help="a few epochs only (for trying the pipeline, not for accuracy)")] = False,
) -> None:
    """Train the ResNet on the staged training images (in-process, SageMaker training contract)."""
    try:
        staged = steps.stage_data(workdir, data_dir)
        model = steps.train_model(workdir, staged, steps.parse_overrides(hyperparameter or []), quick=quick)
    except steps.StepError as e:
        fail(str(e))
    typer.echo(f"model: {model.tarball} (sha256 {model.sha256[:16]}...)")
    typer.echo(json.dumps(model.metrics, indent=2))


@app.command()
def evaluate(
    data_dir: DataDir = None,
    workdir: Workdir = DEFAULT_WORKDIR,
) -> None:
    """Evaluate the trained model on the test images (or the held-out part of the training images)."""
    try:
        staged = steps.stage_data(workdir, data_dir)
        report = steps.evaluate_model(workdir, staged)
    except steps.StepError as e:
        fail(str(e))
    typer.echo(steps.format_evaluation(report))


@app.command()
def serve(
    workdir: Workdir = DEFAULT_WORKDIR,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8080,
) -> None:
    """Serve the trained model on the SageMaker inference contract (foreground; Ctrl-C stops)."""
    from local_model import serve as server

    model_dir = steps.model_paths(workdir).model_dir
    if not model_dir.is_dir():
        fail(f"no trained model in {model_dir}; run `scones train` first")
    sys.exit(server.main(["--model-dir", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]))


if __name__ == "__main__":
    app()
