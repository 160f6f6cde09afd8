"""Reports: what the workflow (or the endpoint) did with a batch of test images (with routed precision and
coverage at the threshold, and the precision/coverage curve as a PNG), and what the model server captured
(counts, class distribution, confidence histogram as text and as a PNG drawn with matplotlib)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from lambdas.contract import CLASSES, Outcome, predicted_class
from local_model.capture_reader import CapturedInference
from local_model.threshold import precision_coverage_curve, routed_precision_coverage, wilson_interval
from scones.workflow.batch import ImageOutcome

OUTCOMES = tuple(outcome.value for outcome in Outcome)
HISTOGRAM_BINS = tuple(round(0.5 + 0.05 * i, 2) for i in range(11))  # top-class probability, 0.50..1.00


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it (q in
    0..100; q=0 gives the minimum, q=100 the maximum). Always one of the values, never interpolated. None
    when there are no values. The one definition every report and benchmark of this project uses."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    if not ordered:
        return None
    # Exact arithmetic on q as written: in floats 7 / 100 * 100 is 7.000000000000001, whose ceiling is 8.
    rank = math.ceil(Fraction(str(q)) * len(ordered) / 100)
    return ordered[min(len(ordered), max(1, rank)) - 1]


@dataclass
class BatchReport:
    """The numbers of one batch run; `to_dict()` is what `--json` and the demo's report file hold."""

    via: str  # "workflow" or "endpoint"
    n_images: int
    threshold: float
    routed: int
    rejected: int
    failed: int
    errors: dict[str, int]  # failed images by error name
    accuracy: float | None  # top-class accuracy over every image the endpoint scored, rejected ones included
    routed_accuracy: float | None  # share of routed images routed as their true class (= routed_precision)
    # rows: true class; columns: routed as each class, then "rejected", then "failed"
    confusion: dict[str, dict[str, int]]
    latency_p50_s: float | None
    latency_p99_s: float | None
    coverage: float | None = None  # share of all images routed (failed ones count as not routed)
    routed_precision: float | None = None  # share of routed images sent to their true class
    routed_precision_wilson95: tuple[float, float] | None = None  # its 95% Wilson interval
    coverage_wilson95: tuple[float, float] | None = None
    threshold_source: str | None = None  # where the stack's threshold came from (model.json, --threshold, ...)
    captured: int | None = None  # capture records found after the run
    capture_destination: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_batch(outcomes: list[ImageOutcome], threshold: float, via: str) -> BatchReport:
    counts = Counter(o.outcome for o in outcomes)
    scored = [o for o in outcomes if o.scores]
    routed = [o for o in outcomes if o.outcome == Outcome.ROUTED]
    columns = [*CLASSES, Outcome.REJECTED.value, Outcome.FAILED.value]
    confusion = {label: dict.fromkeys(columns, 0) for label in CLASSES}
    for o in outcomes:
        column = o.predicted if o.outcome == Outcome.ROUTED else Outcome(o.outcome).value
        confusion[o.label][column] += 1
    latencies = [o.seconds for o in outcomes if o.seconds is not None and o.outcome != Outcome.FAILED]
    return BatchReport(
        via=via,
        n_images=len(outcomes),
        threshold=threshold,
        routed=counts[Outcome.ROUTED],
        rejected=counts[Outcome.REJECTED],
        failed=counts[Outcome.FAILED],
        errors=dict(Counter(o.error for o in outcomes if o.outcome == Outcome.FAILED)),
        accuracy=sum(o.predicted == o.label for o in scored) / len(scored) if scored else None,
        routed_accuracy=sum(o.predicted == o.label for o in routed) / len(routed) if routed else None,
        coverage=len(routed) / len(outcomes) if outcomes else None,
        routed_precision=sum(o.predicted == o.label for o in routed) / len(routed) if routed else None,
        routed_precision_wilson95=wilson_interval(sum(o.predicted == o.label for o in routed), len(routed)),
        coverage_wilson95=wilson_interval(len(routed), len(outcomes)),
        confusion=confusion,
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
    )


def _share(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f}%)" if whole else str(part)


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    """E.g. "0.993 (95% CI 0.963-0.999)": a proportion with its Wilson interval."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


def format_batch_report(report: BatchReport, what: str) -> str:
    """The short text report: outcomes, accuracy, confusion matrix, latency, captures."""
    n = report.n_images
    through = "the Step Functions workflow" if report.via == "workflow" else "the model endpoint (no workflow)"
    lines = [f"Report: {n} {what} through {through}"]
    outcome = f"{_share(report.routed, n)} routed, {_share(report.rejected, n)} rejected as low confidence"
    lines.append(f"  outcomes      {outcome} (threshold {report.threshold}), {report.failed} failed")
    if report.threshold_source:
        lines.append(f"  threshold     {report.threshold} from {report.threshold_source}")
    lines.append(
        f"  at threshold  coverage {with_interval(report.coverage, report.coverage_wilson95)} (share routed), "
        f"routed precision {with_interval(report.routed_precision, report.routed_precision_wilson95)}; "
        f"top-class accuracy {_number(report.accuracy, '.3f')}"
    )
    for name, count in sorted(report.errors.items()):
        lines.append(f"                  {count} x {name}")
    scored = sum(sum(row[c] for c in (*CLASSES, "rejected")) for row in report.confusion.values())
    lines.append(f"  accuracy      {_number(report.accuracy, '.3f')} (top class of all {scored} scored images)")
    right = sum(report.confusion[label][label] for label in CLASSES)
    lines.append(
        f"  routed right  {right} of {report.routed} ({_number(report.routed_accuracy, '.3f')}): "
        "routed images sent to their true class"
    )
    columns = [*CLASSES, "rejected", "failed"]
    lines.append("  confusion     rows: true class; columns: routed as, or not routed")
    lines.append(" " * 14 + "".join(f"{c:>12}" for c in columns))
    for label in CLASSES:
        lines.append(f"{label:>14}" + "".join(f"{report.confusion[label][c]:>12}" for c in columns))
    clock = "StartExecution to end, Step Functions' clock" if report.via == "workflow" else "per request"
    p50 = _number(report.latency_p50_s and report.latency_p50_s * 1000, ".0f")
    p99 = _number(report.latency_p99_s and report.latency_p99_s * 1000, ".0f")
    lines.append(f"  latency       p50 {p50} ms, p99 {p99} ms ({clock})")
    if report.captured is not None:
        lines.append(f"  captured      {report.captured} inference records in {report.capture_destination}")
    return "\n".join(lines)


# --- Precision / coverage -------------------------------------------------------------------------


def scored_outcomes(outcomes: list[ImageOutcome]) -> tuple[list[float], list[bool]]:
    """(top-class probability, top class is the true one) of every image the endpoint scored."""
    scored = [o for o in outcomes if o.scores]
    return [max(o.scores) for o in scored], [o.predicted == o.label for o in scored]


def plot_batch_precision_coverage(
    outcomes: list[ImageOutcome], threshold: float, path: Path, title: str
) -> Path | None:
    """The precision/coverage PNG of a batch's scored images; None (nothing drawn) when none was scored."""
    scores, correct = scored_outcomes(outcomes)
    return plot_precision_coverage(scores, correct, threshold, path, title) if scores else None


def plot_precision_coverage(scores: list[float], correct: list[bool], threshold: float, path: Path, title: str) -> Path:
    """Routed precision against coverage over every threshold, and both against the threshold, with
    `threshold` marked, as a PNG. Coverage here is of the scored images."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    curve = [(t, p, c) for t, p, c in precision_coverage_curve(scores, correct) if p is not None]
    if not curve:
        raise ValueError("no scored images: nothing to draw a precision/coverage curve from")
    thresholds, precisions, coverages = (list(column) for column in zip(*curve, strict=True))
    precision, coverage = routed_precision_coverage(scores, correct, threshold)
    figure, (curve_axis, threshold_axis) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        curve_axis.step(coverages, precisions, where="post", color="#4c72b0")
        label = f"threshold {threshold}: precision {_number(precision, '.3f')}, coverage {coverage:.3f}"
        curve_axis.plot([coverage], [precision if precision is not None else 0.0], "o", color="#c44e52", label=label)
        curve_axis.set_xlabel("coverage (share routed)")
        curve_axis.set_ylabel("routed precision")
        curve_axis.set_xlim(0, 1.02)
        curve_axis.legend(loc="lower left", fontsize=8)
        threshold_axis.step(thresholds, precisions, where="post", label="routed precision", color="#4c72b0")
        threshold_axis.step(thresholds, coverages, where="post", label="coverage", color="#55a868")
        threshold_axis.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold}")
        threshold_axis.set_xlabel("threshold (top-class probability)")
        threshold_axis.legend(loc="lower left", fontsize=8)
        figure.suptitle(f"{title}: {len(scores)} scored images", fontsize=9)
    except BaseException:
        plt.close(figure)
        raise
    return save_figure(figure, path)


def save_figure(figure, path: Path, dpi: int = 100) -> Path:
    """Lay out, write as PNG (making the folder), and close: the end of every figure this project draws."""
    import matplotlib.pyplot as plt

    try:
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi)
    finally:
        plt.close(figure)
    return path


# --- Captured inferences ---------------------------------------------------------------------------


@dataclass
class CaptureSummary:
    destination: str
    count: int
    by_class: dict[str, int]  # predicted (top) class of each captured answer
    confidences: list[float]  # top-class probability of each captured answer
    histogram: list[int]  # counts per HISTOGRAM_BINS interval
    first: str | None  # inferenceTime of the first and last record
    last: str | None
    bad_answers: int  # records read whose answer is not two probabilities (unreadable lines are counted apart)

    def below(self, threshold: float) -> int:
        return sum(c < threshold for c in self.confidences)


def summarize_captures(records: Iterable[CapturedInference], destination: str) -> CaptureSummary:
    by_class = dict.fromkeys(CLASSES, 0)
    confidences, times, bad_answers = [], [], 0
    for record in records:
        label = predicted_class(record.output)
        if label is None:
            bad_answers += 1
            continue
        by_class[label] += 1
        confidences.append(float(max(record.output)))
        times.append(record.inference_time)
    histogram = [0] * (len(HISTOGRAM_BINS) - 1)
    for c in confidences:
        histogram[min(len(histogram) - 1, max(0, int((c - HISTOGRAM_BINS[0]) / 0.05)))] += 1
    return CaptureSummary(
        destination=destination,
        count=len(confidences) + bad_answers,
        by_class=by_class,
        confidences=confidences,
        histogram=histogram,
        first=min(times) if times else None,
        last=max(times) if times else None,
        bad_answers=bad_answers,
    )


def format_captures(summary: CaptureSummary, threshold: float, plot: Path | None) -> str:
    if summary.count == 0:
        return f"no captured inferences under {summary.destination} yet: classify some images first"
    lines = [f"Captured inferences in {summary.destination}: {summary.count} record{'' if summary.count == 1 else 's'}"]
    if summary.first:
        lines.append(f"  time          {summary.first} .. {summary.last}")
    scored = len(summary.confidences)
    lines.append("  classes       " + ", ".join(f"{name} {_share(n, scored)}" for name, n in summary.by_class.items()))
    lines.append(f"  below {threshold:<7} {_share(summary.below(threshold), scored)} (would be rejected)")
    lines.append("  confidence    (top-class probability)")
    widest = max(summary.histogram) or 1
    for (low, high), count in zip(itertools.pairwise(HISTOGRAM_BINS), summary.histogram, strict=True):
        bar = "#" * math.ceil(40 * count / widest) if count else ""
        lines.append(f"    {low:.2f}-{high:.2f} {count:>6} {bar}")
    if summary.bad_answers:
        lines.append(f"  bad answers   {summary.bad_answers} records whose answer is not {len(CLASSES)} probabilities")
    if plot is not None:
        lines.append(f"  plot          {plot}")
    return "\n".join(lines)


def plot_captures(summary: CaptureSummary, threshold: float, path: Path) -> Path:
    """Class distribution and confidence histogram of the captured inferences, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    figure, (classes_axis, confidence_axis) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=(1, 2))
    try:
        classes_axis.bar(list(summary.by_class), list(summary.by_class.values()), color=["#4c72b0", "#dd8452"])
        classes_axis.set_title("predicted class")
        classes_axis.set_ylabel("captured inferences")
        confidence_axis.hist(summary.confidences, bins=list(HISTOGRAM_BINS), color="#55a868", edgecolor="white")
        confidence_axis.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold}")
        confidence_axis.set_title("top-class probability")
        confidence_axis.set_xlabel("probability")
        confidence_axis.legend(loc="upper left")
        figure.suptitle(f"{summary.count} captured inferences: {summary.destination}", fontsize=9)
    except BaseException:
        plt.close(figure)
        raise
    return save_figure(figure, path)
