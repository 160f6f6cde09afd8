"""A solution run end to end: read and map it (sources, definition, traps), create its functions and state machine
in the environment (cloud/solution.py), run one execution per input and read each one's path (trace.py)."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cloud.aws import AwsTarget
from cloud.solution import CreatedSolution, SolutionFunction, create_solution
from lambdas.contract import WorkflowError, image_content_type
from scones.solution.definition import (
    LambdaTask,
    Mapped,
    lambda_tasks,
    load_definition,
    map_functions,
    rewritten,
)
from scones.solution.sources import read_sources, zip_source
from scones.solution.trace import Trace, read_trace
from scones.solution.traps import Trap, check_definition, check_sources, endpoint_names
from scones.workflow.execution import DIRECT_PREFIX, upload_image, wait_for_execution

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class SolutionInputError(ValueError):
    """An image or input given cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Solution:
    """A solution read and checked, before anything is created."""

    name: str
    definition: dict
    tasks: list[LambdaTask]
    mapped: list[Mapped]
    traps: list[Trap]
    endpoint_names: list[tuple[str, str]]  # (handler, the endpoint name it invokes)


def solution_name(definition_path: Path) -> str:
    """A name for the solution's resources from its definition file's name: letters, digits and hyphens."""
    stem = definition_path.name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9-]+", "-", stem).strip("-")[:40] or "solution"


def read_solution(definition_path: Path, sources: list[Path], explicit: dict[str, str], name: str | None) -> Solution:
    definition = load_definition(definition_path)
    tasks = lambda_tasks(definition)
    mapped = map_functions(tasks, read_sources(sources), explicit)
    traps = check_sources(mapped) + check_definition(definition, tasks, mapped)
    return Solution(name or solution_name(definition_path), definition, tasks, mapped, traps, endpoint_names(mapped))


def deploy_solution(
    aws: AwsTarget, solution: Solution, model_url: str, environment: dict[str, str], progress
) -> CreatedSolution:
    sources = {str(m.handler.source): m.handler.source for m in solution.mapped}
    zips = {key: zip_source(path) for key, path in sources.items()}
    functions = [SolutionFunction(m.function, m.handler.handler, str(m.handler.source)) for m in solution.mapped]
    return create_solution(
        aws,
        solution.name,
        functions,
        zips,
        lambda arns: rewritten(solution.definition, solution.tasks, arns),
        model_url,
        environment,
        progress,
    )


def image_files(argument: str) -> list[Path]:
    path = Path(argument)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise SolutionInputError(f"{argument}: no PNG or JPEG in this folder")
        return found
    if not path.is_file():
        raise SolutionInputError(f"{argument}: neither an image file, a folder of them, nor s3://BUCKET/KEY")
    return [path]


def course_inputs(aws: AwsTarget, images: list[str], bucket: str | None) -> list[tuple[str, dict]]:
    """(label, input) per image, in the course's shape: `{"image_data": "", "s3_bucket": ..., "s3_key": ...}`.
    Local files are uploaded to `bucket` first, under a prefix no trigger watches."""
    inputs = []
    for argument in images:
        if argument.startswith("s3://"):
            found_bucket, _, key = argument.removeprefix("s3://").partition("/")
            if not found_bucket or not key:
                raise SolutionInputError(f"{argument} is not s3://BUCKET/KEY")
            inputs.append((argument, {"image_data": "", "s3_bucket": found_bucket, "s3_key": key}))
            continue
        for path in image_files(argument):
            data = path.read_bytes()
            try:
                image_content_type(data)
            except WorkflowError as e:
                raise SolutionInputError(f"{path}: {e}") from e
            if bucket is None:
                raise SolutionInputError(
                    f"{path} is a local file: give --bucket to upload it to (or run `scones up`, whose bucket is used)"
                )
            key = upload_image(aws.client("s3"), bucket, data, prefix=DIRECT_PREFIX)
            inputs.append((str(path), {"image_data": "", "s3_bucket": bucket, "s3_key": key}))
    return inputs


def run_execution(aws: AwsTarget, state_machine_arn: str, event: object, definition: dict, timeout_s: float) -> Trace:
    """Start one execution on `event` as given (nothing added), wait for it and read its path."""
    sfn = aws.client("stepfunctions")
    started = time.monotonic()
    arn = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=f"solution-{uuid.uuid4().hex}", input=json.dumps(event)
    )["executionArn"]
    result = wait_for_execution(sfn, arn, timeout_s)
    events = [
        e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn) for e in page["events"]
    ]
    trace = read_trace(arn, result.status, result.error, result.cause, events, definition)
    trace.seconds = result.seconds if result.seconds > 0 else time.monotonic() - started
    return trace
