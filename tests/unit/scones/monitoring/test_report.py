"""The report's numbers from a batch of outcomes: counts, accuracy, coverage and routed precision at the
threshold, confusion matrix, latency percentiles, and the precision/coverage PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lambdas.contract import DEFAULT_CONFIDENCE_THRESHOLD
from scones.monitoring.report import (
    format_batch_report,
    percentile,
    plot_batch_precision_coverage,
    plot_precision_coverage,
    summarize_batch,
)
from scones.workflow.batch import ImageOutcome


def outcome(label: str, scores: list[float] | None, what: str, seconds: float | None = 1.0, error=None):
    return ImageOutcome(Path(f"{label}.png"), label, scores, what, seconds, error=error)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),  # nothing measured: no number rather than a made-up one
        ([3.0], 0, 3.0),
        ([3.0], 99, 3.0),
        ([1, 2, 3, 4], 50, 2),  # the lower middle value, not the mean of the two (2.5)
        ([1, 2, 3, 4], 51, 3),
        ([1, 2, 3, 4], 99, 4),
        ([4, 1, 3, 2], 75, 3),  # order of the input does not matter
        ([1, 2, 3, 4], 0, 1),  # q=0: the minimum
        ([1, 2, 3, 4], 100, 4),  # q=100: the maximum
        (list(range(1, 101)), 99, 99),  # the 99th of 100, not the maximum
        (list(range(1, 101)), 7, 7),  # 7 / 100 * 100 is 7.000000000000001 in floats: still rank 7
        (list(range(1, 1001)), 99.9, 999),
        (list(range(1, 11)), 90, 9),
        (list(range(1, 11)), 91, 10),
        ([5, 5, 5, 1], 50, 5),  # ties
        ((x for x in [2.5, 0.5]), 50, 0.5),  # any iterable
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_percentile_is_always_one_of_the_values():
    values = [0.183, 0.191, 0.204, 1.608, 0.188]
    assert all(percentile(values, q) in values for q in range(101))


@pytest.mark.parametrize("q", [-1, 100.5, 150])
def test_percentile_outside_0_to_100_is_refused(q):
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1, 2], q)


def test_benchmarks_use_the_one_percentile_definition():
    """No second definition: the benchmarks import scones.monitoring.report.percentile and nothing else computes one."""
    root = Path(__file__).resolve().parents[4]
    sources = {p: p.read_text() for d in ("benchmarks", "scones") for p in (root / d).rglob("*.py")}
    others = (
        "def percentile(",
        "np.percentile",
        "np.quantile",
        "np.median",
        "statistics.quantiles",
        "statistics.median",
    )

    offending = [f"{p.name}: {o}" for p, text in sources.items() for o in others if o in text]
    assert offending == ["report.py: def percentile("]
    for name in ("workflow_latency.py", "serve_latency.py", "emulators.py", "load_ledger.py", "torch_builds.py"):
        assert "from scones.monitoring.report import percentile\n" in sources[root / "benchmarks" / name], name


def test_summary_counts_every_image_once_and_keeps_failures_out_of_latency():
    outcomes = [
        outcome("bicycle", [0.97, 0.03], "routed", 0.5),
        outcome("bicycle", [0.40, 0.60], "rejected", 0.7),  # wrong and unsure
        outcome("motorcycle", [0.02, 0.98], "routed", 0.9),
        outcome("motorcycle", [0.96, 0.04], "routed", 1.1),  # routed to the wrong class
        outcome("motorcycle", None, "failed", None, error="EndpointError"),
    ]
    report = summarize_batch(outcomes, 0.93, "workflow")
    assert (report.n_images, report.routed, report.rejected, report.failed) == (5, 3, 1, 1)
    assert report.errors == {"EndpointError": 1}
    assert report.accuracy == pytest.approx(2 / 4)  # of the 4 scored images
    assert report.routed_accuracy == pytest.approx(2 / 3)
    assert report.confusion == {
        "bicycle": {"bicycle": 1, "motorcycle": 0, "rejected": 1, "failed": 0},
        "motorcycle": {"bicycle": 1, "motorcycle": 1, "rejected": 0, "failed": 1},
    }
    assert (report.latency_p50_s, report.latency_p99_s) == (0.7, 1.1)

    text = format_batch_report(report, "test images")
    assert "3 (60%) routed, 1 (20%) rejected as low confidence (threshold 0.93), 1 failed" in text
    assert "1 x EndpointError" in text
    assert "routed right  2 of 3" in text
    assert "p50 700 ms, p99 1100 ms" in text
    assert (report.coverage, report.routed_precision) == (pytest.approx(3 / 5), pytest.approx(2 / 3))
    assert (
        "coverage 0.600 (95% CI 0.231-0.882) (share routed), routed precision 0.667 (95% CI 0.208-0.939); "
        "top-class accuracy 0.500" in text
    )


def test_the_threshold_source_is_reported_when_known():
    report = summarize_batch([outcome("bicycle", [0.99, 0.01], "routed")], 0.9876, "workflow")
    report.threshold_source = "model.json: routed precision 1.000 at coverage 71%"
    assert "threshold     0.9876 from model.json: routed precision 1.000" in format_batch_report(report, "images")


def test_the_precision_coverage_png_is_written_with_the_threshold_marked(tmp_path):
    outcomes = [
        outcome("bicycle", [0.99, 0.01], "routed"),
        outcome("bicycle", [0.30, 0.70], "rejected"),
        outcome("motorcycle", [0.05, 0.95], "routed"),
        outcome("motorcycle", [0.94, 0.06], "routed"),
        outcome("motorcycle", [0.45, 0.55], "rejected"),
        outcome("motorcycle", None, "failed", None, error="EndpointError"),
    ]
    path = plot_batch_precision_coverage(outcomes, DEFAULT_CONFIDENCE_THRESHOLD, tmp_path / "c" / "curve.png", "t")
    assert path == tmp_path / "c" / "curve.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
        colors = image.convert("RGB").getcolors(maxcolors=100_000)
    assert len(colors) > 50  # axes, two curves, the marked threshold: not a blank canvas
    assert any(abs(r - 0xC4) < 8 and abs(g - 0x4E) < 8 and abs(b - 0x52) < 8 for _, (r, g, b) in colors)  # the mark
    assert plot_batch_precision_coverage([outcomes[-1]], 0.9, tmp_path / "none.png", "t") is None
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(ValueError, match="no scored images"):
        plot_precision_coverage([], [], 0.9, tmp_path / "x.png", "t")


def test_an_empty_batch_reports_no_numbers_rather_than_failing():
    text = format_batch_report(summarize_batch([], 0.93, "endpoint"), "test images")
    assert "accuracy      n/a" in text and "p50 n/a ms" in text
