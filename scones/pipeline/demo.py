"""`scones demo`: the whole pipeline in one process. Emulator, data, training, model server and stack, the
test images through the workflow a few at a time, a short report, then everything stopped (or kept running
until Ctrl-C)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local_model.capture import CaptureError
from local_model.capture_reader import CaptureReadProblems, read_captured_inferences
from scones.console.server import console_beside
from scones.local.connection import TargetKind, connect
from scones.local.environment import export_lines, local_environment, wait_until_interrupted
from scones.monitoring.report import (
    BatchReport,
    format_batch_report,
    plot_batch_precision_coverage,
    plot_captures,
    summarize_batch,
)
from scones.monitoring.report import summarize_captures as summarize_capture_records
from scones.pipeline import steps
from scones.pipeline.deployment import DeployOptions
from scones.workflow.batch import DEFAULT_CONCURRENCY, EXECUTION_TIMEOUT_S, ImageOutcome, run_workflow_batch
from scones.workflow.ledger import wait_for_captures

CAPTURE_WAIT_S = 20.0  # the model server writes captures every second; allow for busy cores


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    data_dir: Path | None
    quick: bool
    overrides: dict
    deploy: DeployOptions
    concurrency: int = DEFAULT_CONCURRENCY
    limit: int | None = None  # test images to run (None: all)
    keep_running: bool = False
    emulator_port: int | None = None
    timeout_s: float = EXECUTION_TIMEOUT_S


@dataclass
class DemoResult:
    report: BatchReport
    report_path: Path
    plot_path: Path | None


def reports_dir(workdir: Path) -> Path:
    return Path(workdir) / "reports"


def count_captures(destination: str, expected: int, s3, timeout_s: float = CAPTURE_WAIT_S) -> list:
    """The captured records, once at least `expected` are there or at the deadline (writes are batched)."""
    return wait_for_captures(lambda: list(read_captured_inferences(destination, client=s3)), expected, timeout_s)


def run_demo(options: DemoOptions, say: Callable[[str], None]) -> DemoResult:
    workdir = Path(options.workdir)
    total = 7
    with connect(TargetKind.emulator, start_embedded=True, emulator_port=options.emulator_port) as connection:
        say(f"[1/{total}] emulator: {connection.describe()}" + (" (stopped at the end)" if connection.embedded else ""))

        staged = steps.stage_data(workdir, options.data_dir)
        described = staged.describe()
        n_train = sum(described["train"].values())
        test_images = staged.test_images()[: options.limit] if options.limit else staged.test_images()
        held = " (held out: the folder has no test/ split)" if staged.test_is_holdout else " (its test split)"
        say(f"[2/{total}] data: {staged.source}: {n_train} images to train on, {len(test_images)} to test{held}")

        recipe = steps.describe_recipe(options.quick, options.overrides)
        purpose = ": for trying the pipeline, not for accuracy" if options.quick else ""
        say(f"[3/{total}] train: {recipe}{purpose}; log {steps.training_log(workdir)}")
        model = steps.train_model(workdir, staged, options.overrides, quick=options.quick)
        say(f"      {model.metrics['train_seconds']:.0f} s; {model.tarball} (sha256 {model.sha256[:12]})")
        say(f"      {steps.describe_trained(model, steps.require_model(workdir).model_dir)}")

        say(f"[4/{total}] deploy: stack {options.deploy.stack_name} and a model server standing in for SageMaker")
        paths = steps.require_model(workdir)
        with local_environment(connection, workdir, options.deploy, paths, model.sha256, say=indent(say)) as env:
            outputs = env.deployment.outputs
            say(f"      state machine {outputs['StateMachineArn']}")
            say(
                f"[5/{total}] workflow: {len(test_images)} test images, {options.concurrency} executions at a time "
                f"(bucket {outputs['ImageBucketName']})"
            )
            outcomes = run_workflow_batch(
                connection.aws,
                outputs,
                test_images,
                concurrency=options.concurrency,
                timeout_s=options.timeout_s,
            )
            # The threshold the stack's filter applied, as deployed: model.json's unless --threshold overrode it.
            report = summarize_batch(outcomes, float(outputs["ConfidenceThreshold"]), "workflow")
            report.threshold_source = env.deployment.threshold.source
            report.extra = {"model_sha256": model.sha256, "train_metrics": model.metrics, "data": described}

            destination, s3 = env.deployment.capture_destination, connection.aws.client("s3")
            plot_path = capture_report(report, outcomes, destination, s3, workdir)
            say(f"[6/{total}] captures: " + describe_captures(report, plot_path))
            monitor_page = monitor_report(destination, s3, report.threshold, paths, workdir)
            report.extra["monitor_report"] = str(monitor_page) if monitor_page else None
            if monitor_page:
                say(f"      monitoring report {monitor_page} (`scones monitor` draws it again, from the bucket)")
            what = "held-out images" if staged.test_is_holdout else "test images"
            curve_path = plot_batch_precision_coverage(
                outcomes, report.threshold, reports_dir(workdir) / "precision-coverage.png", f"demo, {what}"
            )
            report.extra["precision_coverage_plot"] = str(curve_path) if curve_path else None
            report_path = write_report(workdir, report)

            say(f"[7/{total}] " + format_batch_report(report, what))
            if curve_path:
                say(f"  curve         {curve_path} (routed precision against coverage, the threshold marked)")
            if options.quick and report.rejected > report.routed:
                say("  note          a --quick model is rarely confident: the full recipe (no --quick) routes far more")
            say(f"  saved         {report_path}")
            if options.keep_running:
                say("Still running (--keep-running). In another terminal:")
                for line in export_lines(connection, env.deployment.model_server_url):
                    say(f"  export {line}")
                say("  scones classify IMAGE.png   scones evaluate   scones captures")
                with console_beside(connection, outputs, options.deploy.stack_name, workdir) as console:
                    say(f"console: {console.url} (executions, their graph and path, images, logs)")
                    say("Ctrl-C (or `scones teardown`) stops everything.")
                    with contextlib.suppress(KeyboardInterrupt):
                        wait_until_interrupted((connection.emulator, env.deployment.model_server))
            say("stopping" + ("" if options.keep_running else " (--keep-running would leave it all running)"))
        stopped = "the emulator and the model server" if connection.embedded else "the model server"
        say(f"stopped {stopped}; deleted stack {options.deploy.stack_name}")
    say(f"The model stays in {steps.model_paths(workdir).tarball}: `scones up` serves and deploys it again.")
    return DemoResult(report, report_path, plot_path)


def capture_report(
    report: BatchReport, outcomes: list[ImageOutcome], destination: str | None, s3, workdir: Path
) -> Path | None:
    """Wait for the model server's captured records, add their count to `report`, draw the plot."""
    if destination is None:
        return None
    expected = sum(o.scores is not None for o in outcomes)
    try:
        records = count_captures(destination, expected, s3)
    except CaptureError as e:
        report.extra["capture_error"] = str(e)
        return None
    summary = summarize_capture_records(records, destination)
    report.captured, report.capture_destination = summary.count, destination
    report.extra["captured_by_class"] = summary.by_class
    report.extra["captured_below_threshold"] = summary.below(report.threshold)
    if summary.count == 0:
        return None
    return plot_captures(summary, report.threshold, reports_dir(workdir) / "captures.png")


def monitor_report(
    destination: str | None, s3, threshold: float, model: steps.ModelPaths, workdir: Path
) -> Path | None:
    """The `scones monitor` report of what the demo's model server captured, against the model's baseline."""
    from scones.monitoring.page import collect, drift_section, write_report

    if destination is None:
        return None
    problems = CaptureReadProblems()
    try:
        records = read_captured_inferences(destination, client=s3, problems=problems)
        data = collect(records, destination, threshold, problems)
    except CaptureError:
        return None
    data.drift = drift_section(data, model.model_dir, window_size=100)
    return write_report(data, reports_dir(workdir) / "monitor")


def describe_captures(report: BatchReport, plot: Path | None) -> str:
    if report.captured is None:
        return f"could not be read: {report.extra.get('capture_error', 'no capture destination')}"
    by_class = ", ".join(f"{n} {name}" for name, n in report.extra["captured_by_class"].items())
    below = report.extra["captured_below_threshold"]
    return f"{report.captured} records ({by_class}; {below} below the threshold) in {report.capture_destination}" + (
        f"; plot {plot} (`scones captures` shows the histogram)" if plot else ""
    )


def write_report(workdir: Path, report: BatchReport) -> Path:
    path = reports_dir(workdir) / "demo-report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return path


def indent(say: Callable[[str], None], prefix: str = "      ") -> Callable[[str], None]:
    return lambda line: say(prefix + line)
