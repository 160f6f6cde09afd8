"""`scones solution run` and `scones solution check`: a course solution (its Lambda sources and the state machine
exported from the console) run in the environment `scones up` runs, or only checked for the traps AWS would
hit. The work is in scones/solution/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from cloud.defaults import DEFAULT_WORKDIR
from scones.cli.common import AsJson, Timeout, Workdir, app, indent, recorded_state, reports_errors, say
from scones.errors import EXIT_FAILED, EnvironmentProblemError, UsageProblemError
from scones.local.connection import TargetKind, connect
from scones.solution.definition import DefinitionError, MappingError
from scones.solution.runner import (
    Solution,
    SolutionInputError,
    course_inputs,
    deploy_solution,
    read_solution,
    run_execution,
)
from scones.solution.sources import SolutionSourceError
from scones.solution.trace import elided, format_trace
from scones.workflow.batch import EXECUTION_TIMEOUT_S

solution_app = typer.Typer(
    help="Run a course solution (its Lambda sources and exported state machine) locally, traps explained.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(solution_app, name="solution", short_help="Run your course solution locally; check it for traps.")

Definition = Annotated[
    Path,
    typer.Argument(
        metavar="DEFINITION", help="the state machine definition (JSON, as exported from the Step Functions console)"
    ),
]
Sources = Annotated[
    list[Path],
    typer.Argument(
        metavar="SOURCES",
        help="the Lambda sources: one .py holding several handlers, or one .py or folder per function "
        "(a shell glob works: lambdas/*.py)",
        show_default=False,
    ),
]
Maps = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="FUNCTION=HANDLER",
        help="which handler runs the definition's FUNCTION (HANDLER: file.py:function, a function, a file or a "
        "folder name), when names and order do not tell; repeatable",
    ),
]


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, equals, rest = value.partition("=")
        if not equals or not key or not rest:
            raise UsageProblemError(f"{option} {value!r} is not NAME=VALUE")
        pairs[key] = rest
    return pairs


def read_checked(definition: Path, sources: list[Path], maps: list[str] | None, name: str | None) -> Solution:
    try:
        return read_solution(definition, sources, parse_pairs(maps, "--map"), name)
    except (DefinitionError, MappingError, SolutionSourceError) as e:
        raise UsageProblemError(str(e)) from e


def say_solution(solution: Solution) -> None:
    say(f"solution {solution.name}: {len(solution.tasks)} Lambda task(s)")
    for item in solution.mapped:
        say(f"  {item.function:<28} <- {item.handler.label} ({item.reason})")
    for handler, endpoint in solution.endpoint_names:
        say(
            f"  endpoint {endpoint!r} ({handler}) is accepted in this mode: the model server answers it with its own "
            "model and logs the name (SageMaker would need an endpoint of that name)"
        )
    if solution.traps:
        say(f"traps found ({len(solution.traps)}): each works differently on AWS, or fails here for a hidden reason")
        for trap in solution.traps:
            for line in trap.lines():
                say(f"  {line}")
    else:
        say("no known trap found in the sources and the definition")


@solution_app.command(
    "check",
    short_help="Check a solution for the traps AWS would hit (nothing runs).",
    epilog="\b\nExamples:\n  scones solution check statemachine.json lambda.py\n"
    "  scones solution check definition.json serialize.py classify.py filter.py",
)
@reports_errors
def check(definition: Definition, sources: Sources, maps: Maps = None, as_json: AsJson = False) -> None:
    """Read the definition and the Lambda sources, map the definition's functions to the handlers and report the
    known traps, each with what AWS would do and the fix. Nothing is created or run; exit 1 when a trap is found."""
    solution = read_checked(definition, sources, maps, None)
    if as_json:
        say(json.dumps({"mapping": mapping_record(solution), "traps": [vars(t) for t in solution.traps]}, indent=2))
    else:
        say_solution(solution)
    if solution.traps:
        raise typer.Exit(EXIT_FAILED)


def mapping_record(solution: Solution) -> dict:
    return {m.function: {"handler": m.handler.label, "reason": m.reason} for m in solution.mapped}


@solution_app.command(
    "run",
    short_help="Create a solution's functions and state machine in `scones up`'s environment; run it on images.",
    epilog="\b\nExamples:\n"
    "  scones solution run statemachine.json lambda.py --image photo.png\n"
    "  scones solution run definition.json serialize.py classify.py filter.py --image ../shared/data/some-pngs/\n"
    "  scones solution run definition.json lambdas/ --map Function1=serialize.py:lambda_handler --image s3://B/K\n"
    '  scones solution run definition.json lambda.py --input \'{"image_data": "", "s3_bucket": "B", "s3_key": "K"}\'',
)
@reports_errors
def run(
    definition: Definition,
    sources: Sources,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            metavar="IMAGE",
            help="a local PNG/JPEG (uploaded to the bucket), a folder of them, or s3://BUCKET/KEY; repeatable. Each "
            'runs with the course\'s input: {"image_data": "", "s3_bucket": ..., "s3_key": ...}',
        ),
    ] = None,
    input_json: Annotated[
        str | None,
        typer.Option("--input", metavar="JSON|@FILE", help="run once on this input instead: JSON, or @FILE holding it"),
    ] = None,
    maps: Maps = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", metavar="NAME=VALUE", help="an environment variable for every function; repeatable"),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="names the functions and the state machine (solution-NAME) [default: the definition's file]",
        ),
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option(
            metavar="BUCKET", help="where local images are uploaded [default: the bucket of `scones up`'s stack]"
        ),
    ] = None,
    model_url: Annotated[
        str | None,
        typer.Option(
            help="the model server as the functions reach it [default: the one `scones up` runs] (docker compose: "
            "http://model:8080)"
        ),
    ] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    timeout: Timeout = EXECUTION_TIMEOUT_S,
    as_json: AsJson = False,
) -> None:
    """Run a course solution locally in one command: read the definition and the Lambda sources, map the
    definition's Lambda ARNs to the handlers (by function name, handler name or the order of the Task states;
    --map settles it), report the traps AWS would hit, create the functions (they reach the model server, under
    any endpoint name) and the state machine in the running environment, and run it on each image (or the
    --input). Prints each execution's path with every state's input and output (image_data elided) and explains
    a failure; a JSONPath that selects nothing fails the execution as AWS would (States.Runtime), also where the
    emulator passed null on. Exit 1 when an execution failed (here or, by its paths, on AWS)."""
    solution = read_checked(definition, sources, maps, name)
    environment = parse_pairs(env, "--env")
    if not image and input_json is None:
        raise UsageProblemError("give the images to run on (--image, repeatable), or an --input")
    if image and input_json is not None:
        raise UsageProblemError("--image and --input are exclusive: the images make course inputs themselves")
    if not as_json:
        say_solution(solution)
    state = recorded_state(workdir, TargetKind.emulator)
    model_url = model_url or (state.model_server_url if state else None)
    if not model_url:
        raise EnvironmentProblemError(
            "no model server: start `scones up` (its model server is used), or give --model-url"
        )
    bucket = bucket or (state.outputs.get("ImageBucketName") if state else None)
    with connect(TargetKind.emulator, state) as connection:
        if not as_json:
            say(f"creating it in the {connection.describe()} (model server {model_url})")
        started = time.monotonic()
        created = deploy_solution(
            connection.aws, solution, model_url, environment, indent(say if not as_json else _quiet)
        )
        if not as_json:
            say(f"  created in {time.monotonic() - started:.1f} s")
        try:
            inputs = course_inputs(connection.aws, image, bucket) if image else [("--input", read_input(input_json))]
        except SolutionInputError as e:
            raise UsageProblemError(str(e)) from e
        traces = []
        for label, event in inputs:
            trace = run_execution(connection.aws, created.state_machine_arn, event, solution.definition, timeout)
            traces.append((label, trace))
            if not as_json:
                for line in format_trace(trace, label):
                    say(line)
    failed = [label for label, trace in traces if not trace.succeeded]
    if as_json:
        say(json.dumps(run_record(solution, created, traces), indent=2))
    else:
        say(
            f"{len(traces) - len(failed)} of {len(traces)} execution(s) succeeded; "
            f"state machine {created.state_machine_arn}"
        )
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _quiet(line: str) -> None:
    pass


def read_input(text: str) -> object:
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        return json.loads(raw)
    except (OSError, ValueError) as e:
        raise UsageProblemError(f"--input: {e}") from e


def run_record(solution: Solution, created, traces) -> dict:
    return {
        "solution": solution.name,
        "state_machine_arn": created.state_machine_arn,
        "functions": created.function_names,
        "mapping": mapping_record(solution),
        "traps": [vars(t) for t in solution.traps],
        "executions": [
            {
                "input": label,
                "execution_arn": trace.execution_arn,
                "status": trace.status,
                "succeeded": trace.succeeded,
                "error": trace.error,
                "cause": trace.cause,
                "aws_failure": vars(trace.aws_failure) if trace.aws_failure else None,
                "states": [
                    {
                        "name": step.name,
                        "input": elided(step.input),
                        "output": elided(step.output),
                        "errors": step.errors,
                        "path_failures": [vars(f) for f in step.path_failures],
                    }
                    for step in trace.steps
                ],
            }
            for label, trace in traces
        ],
    }
