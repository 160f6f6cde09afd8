"""The commands that read what the model server captured: `captures` (a summary and a plot) and `monitor`
(the monitoring report with drift)."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_WORKDIR,
)
from local_model.capture import SHADOW_VARIANT_PREFIX
from local_model.capture_reader import ALL_VARIANTS, CaptureReadProblems, read_captured_inferences
from scones.cli.common import (
    DRIFT_WINDOW,
    AsJson,
    StackName,
    Target,
    Workdir,
    app,
    recorded_state,
    reports_errors,
    say,
)
from scones.local.connection import TargetKind, connect, deployed_outputs
from scones.local.state_file import (
    SessionState,
)
from scones.monitoring.report import (
    format_captures,
    plot_captures,
    summarize_captures,
)
from scones.pipeline import steps
from scones.pipeline.deployment import (
    CAPTURE_PREFIX,
)


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
    summary = summarize_captures(read.production_records, read.source)
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
    records: list  # every variant's, shadow ones included (the monitoring report compares them)
    source: str
    threshold: float  # the stack's, else the default
    problems: CaptureReadProblems
    dropped: int | None  # what the session's running model server reports as dropped

    @property
    def production_records(self) -> list:
        """What callers were answered: a shadow variant's records left out."""
        return [r for r in self.records if not r.variant_name.startswith(SHADOW_VARIANT_PREFIX)]


def read_captures(source: str | None, workdir: Path, target: TargetKind, stack_name: str | None) -> ReadCaptures:
    """Every captured record under `source` (default: the deployed stack's capture location), with what
    could not be read counted, and the drop count of the session's model server when it runs."""
    state = recorded_state(workdir, target)
    recorded = state.outputs if state else {}
    problems = CaptureReadProblems()
    if source and not source.startswith("s3://"):
        records = list(read_captured_inferences(source, problems=problems, variants=ALL_VARIANTS))
    else:
        with connect(target, state) as connection:
            if source is None:
                recorded = deployed_outputs(connection, stack_name, state)
                source = f"s3://{recorded['ImageBucketName']}/{CAPTURE_PREFIX}"
            client = connection.aws.client("s3")
            records = list(read_captured_inferences(source, client=client, problems=problems, variants=ALL_VARIANTS))
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
    from scones.monitoring.page import collect, drift_section, format_monitor, write_report

    read = read_captures(source, workdir, target, stack_name)
    data = collect(read.records, read.source, read.threshold if threshold is None else threshold, read.problems)
    data.dropped = read.dropped
    model_dir = steps.model_paths(workdir).model_dir
    data.drift = drift_section(data, baseline or (model_dir if model_dir.is_dir() else None), window)
    page = write_report(data, out or Path(workdir) / "reports" / "monitor")
    say(json.dumps({**data.summary(), "report": str(page)}) if as_json else format_monitor(data, page))
