"""scones/monitoring/compare.py, and the report's champion-against-challenger section: production and shadow
captures of the same requests (same inferenceId) paired and compared; the shadow's never counted as served."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
from typer.testing import CliRunner

from local_model.capture_reader import ALL_VARIANTS, read_captured_inferences
from scones import cli
from scones.errors import EXIT_OK
from scones.monitoring.compare import answer_drift, compare_records, format_comparison
from tests.helpers.captures import write_capture_file

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def write(folder, variant, answers, ids):
    write_capture_file(folder, answers, START, variant=variant, inference_ids=ids)


def captured(tmp_path):
    ids = [f"request-{i}" for i in range(4)]
    write(tmp_path, "AllTraffic", [[0.99, 0.01], [0.97, 0.03], [0.1, 0.9], [0.2, 0.8]], ids)
    write(tmp_path, "Shadow-abc", [[0.6, 0.4], [0.4, 0.6], [0.45, 0.55], [0.3, 0.7]], ids)
    return list(read_captured_inferences(tmp_path, variants=ALL_VARIANTS))


def test_pairs_are_compared_on_agreement_and_confidence(tmp_path):
    comparison = compare_records(captured(tmp_path), threshold=0.9, latencies={"Shadow-abc": [1.0, 3.0]})
    assert comparison.pairs == 4 and comparison.agreement == 0.75
    assert comparison.production.name == "champion (AllTraffic)" and comparison.production.low_confidence_rate == 0.25
    assert comparison.shadow.low_confidence_rate == 1.0 and comparison.shadow.latency_p99_ms == 3.0
    assert comparison.production.latency_p99_ms is None
    assert format_comparison(comparison)[0] == "4 requests answered by both; they chose the same class for 75.0%"


def test_without_a_shadow_there_is_nothing_to_compare(tmp_path):
    write(tmp_path, "AllTraffic", [[0.99, 0.01]], ["x"])
    assert compare_records(list(read_captured_inferences(tmp_path, variants=ALL_VARIANTS)), 0.9) is None


def test_the_monitoring_report_compares_and_counts_only_what_callers_got(tmp_path):
    captured(tmp_path)
    result = CliRunner().invoke(
        cli.app, ["monitor", "--source", str(tmp_path), "--out", str(tmp_path / "report"), "--json"], prog_name="scones"
    )
    assert result.exit_code == EXIT_OK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["scored"] == 4  # the production answers only
    assert summary["comparison"]["pairs"] == 4 and summary["comparison"]["agreement"] == 0.75
    assert "Champion against challenger" in (tmp_path / "report" / "index.html").read_text()


def test_drift_between_the_answers_follows_the_projects_rule():
    rng = np.random.default_rng(0)
    sure = [[float(t), float(1 - t)] for t in rng.uniform(0.9, 1.0, 80)]
    unsure = [[float(t), float(1 - t)] for t in rng.uniform(0.5, 0.55, 80)]
    alike = [[float(t), float(1 - t)] for t in rng.uniform(0.9, 1.0, 80)]
    assert answer_drift(sure, unsure)["differ"] and answer_drift(sure, unsure)["psi_confidence"] > 0.2
    assert not answer_drift(sure, alike)["differ"]
    assert answer_drift(sure[:10], unsure[:10]) == {
        "enough_data": False,
        "differ": False,
        "reason": "not enough data: 10 pairs, drift needs 50",
    }
