"""What every `scones` command shares: the Typer app and its help, the options, how errors become one line
and an exit code, and how output is said."""

from __future__ import annotations

import functools
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cloud.artifacts import REPOSITORY, SourceTree
from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_STACK_NAME,
    DEFAULT_WORKDIR,
)
from cloud.errors import SourceTreeError
from scones.errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    UsageProblemError,
    describe_error,
)
from scones.local.connection import ENDPOINT_URL_VAR, TargetKind
from scones.local.state_file import (
    SessionState,
    read_state,
)

WORKDIR_VAR = "SCONES_WORKDIR"

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
SourceDir = Annotated[
    Path | None,
    typer.Option(
        help="the folder holding lambdas/, statemachine/ and cloud/template.yaml to deploy [default: this repository]",
        show_default=False,
    ),
]


class Via(StrEnum):
    workflow = "workflow"
    endpoint = "endpoint"
    model = "model"


def source_tree(source_dir: Path | None) -> SourceTree:
    """The sources to deploy: --source-dir, checked, else this repository."""
    if source_dir is None:
        return REPOSITORY
    try:
        return SourceTree(source_dir.resolve()).check()
    except SourceTreeError as e:
        raise UsageProblemError(f"--source-dir: {e}") from e


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


def say_outputs(outputs: dict[str, str]) -> None:
    width = max(map(len, outputs), default=0)
    for key, value in sorted(outputs.items()):
        say(f"  {key:<{width}}  {value}")


def indent(function, prefix: str = "  "):
    return lambda line: function(prefix + line)
