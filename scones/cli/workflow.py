"""The commands that run images through what is deployed: `classify` (one image, or every image under an
S3 prefix) and `evaluate` (the test images, through the workflow, the endpoint or the model in-process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_WORKDIR,
)
from lambdas.contract import CLASSES, Outcome, WorkflowError, image_content_type
from scones.cli.common import (
    AsJson,
    Concurrency,
    Limit,
    StackName,
    Target,
    Timeout,
    Via,
    Workdir,
    app,
    recorded_state,
    reports_errors,
    say,
)
from scones.errors import (
    EXIT_FAILED,
    EXIT_REJECTED,
    NotDeployedError,
    UsageProblemError,
)
from scones.local.connection import TargetKind, connect, deployed_outputs
from scones.monitoring.report import (
    format_batch_report,
    plot_batch_precision_coverage,
    summarize_batch,
)
from scones.pipeline import steps
from scones.pipeline.deployment import (
    resolve_threshold,
)
from scones.workflow.batch import (
    DEFAULT_CONCURRENCY,
    EXECUTION_TIMEOUT_S,
    run_endpoint_batch,
    run_workflow_batch,
)
from scones.workflow.execution import ExecutionResult, run_image, run_workflow
from scones.workflow.prefix_batch import (
    PrefixBatchError,
    format_summary,
    is_prefix_argument,
    parse_prefix,
    run_prefix_batch,
)


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
    verdict = "not routed" if result.outcome == Outcome.REJECTED else f"workflow {result.status}"
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
            result = run_image(path, outputs, connection.aws, timeout_s=timeout, start_execution=start_execution)
        else:
            result = run_workflow(event, outputs, connection.aws, timeout)
    say(json.dumps({"image": image, **result.summary()}) if as_json else f"{image}: {describe_result(result)}")
    if result.status != "SUCCEEDED":
        raise typer.Exit(EXIT_REJECTED if result.outcome == Outcome.REJECTED else EXIT_FAILED)


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
    """`scones classify s3://BUCKET/PREFIX/`: the orchestration is in scones/workflow/prefix_batch.py."""
    try:
        bucket, key_prefix = parse_prefix(argument, prefix)
    except PrefixBatchError as e:
        raise UsageProblemError(str(e)) from e
    state = recorded_state(workdir, target)
    with connect(target, state) as connection:
        outputs = deployed_outputs(connection, stack_name, state)
        result = run_prefix_batch(
            connection.aws,
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
            outcomes = run_workflow_batch(connection.aws, outputs, images, concurrency=concurrency, timeout_s=timeout)
        else:
            model_url = state.model_server_url if state else None
            if connection.kind is TargetKind.emulator and not model_url:
                raise NotDeployedError(
                    "no model server is recorded in the state file: run `scones deploy` or `scones up`"
                )
            runtime = connection.aws.client("sagemaker-runtime", endpoint_url=model_url)
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
