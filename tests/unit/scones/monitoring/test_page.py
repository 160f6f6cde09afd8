"""`scones monitor` on captured files it did not write itself: the pictures, the HTML page (opened in a real
headless browser), the counts of what could not be read, and the drift section against a baseline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from local_model.baseline import build_baseline, save_baseline
from scones import cli
from scones.errors import EXIT_FAILED, EXIT_OK
from tests.helpers.captures import write_capture_file

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CLASSES = ["bicycle", "motorcycle"]


def scores(rng: np.random.Generator, n: int, low: float, high: float) -> list[list[float]]:
    top = rng.uniform(low, high, n)
    first = rng.random(n) < 0.5
    return [[float(t), float(1 - t)] if f else [float(1 - t), float(t)] for t, f in zip(top, first, strict=True)]


def write_captures(folder: Path, answers: list[list[float]], extra_lines: tuple[str, ...] = ()) -> None:
    write_capture_file(folder, answers, START, seconds_apart=7, extra_lines=extra_lines)


def monitor(*args) -> dict:
    result = CliRunner().invoke(cli.app, ["monitor", *map(str, args), "--json"], prog_name="scones")
    assert result.exit_code == EXIT_OK, (result.stdout, result.stderr)
    return json.loads(result.stdout)


@pytest.fixture
def baseline_file(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    return save_baseline(model_dir, build_baseline(np.array(scores(rng, 120, 0.7, 1.0)), CLASSES, "validation"))


def test_the_report_draws_its_pictures_counts_what_it_cannot_read_and_renders(tmp_path, baseline_file, rendered_images):
    captured = tmp_path / "captured"
    answers = scores(np.random.default_rng(2), 150, 0.7, 1.0)
    write_captures(captured, answers, extra_lines=("not json", json.dumps({"captureData": {}})))
    out = tmp_path / "report"
    summary = monitor("--source", captured, "--out", out, "--baseline", baseline_file, "--threshold", 0.9)
    assert summary["records"] == summary["scored"] == 150
    assert summary["rejected"] == sum(max(a) < 0.9 for a in answers)
    assert summary["unreadable"]["by_kind"] == {"line not JSON": 1, "not a capture record": 1}
    assert sorted(summary["pictures"].values()) == ["classes.png", "confidence.png", "lowest.png"]
    assert not summary["drift"]["overall"]["drifted"]  # the same distribution as the baseline
    page = Path(summary["report"])
    images = rendered_images(page)
    assert sorted(src for src, _, _ in images) == sorted(summary["pictures"].values())
    assert all(loaded and width > 0 for _, loaded, width in images), images
    html = page.read_text()
    assert '<td id="records">150</td>' in html and "No drift" in html


def test_a_shifted_stream_is_flagged_as_drift_in_the_report(tmp_path, baseline_file):
    captured = tmp_path / "captured"
    write_captures(captured, scores(np.random.default_rng(3), 150, 0.5, 0.75))  # the model far less sure
    summary = monitor("--source", captured, "--out", tmp_path / "report", "--baseline", baseline_file)
    assert summary["drift"]["overall"]["drifted"]
    assert any(w["report"]["drifted"] for w in summary["drift"]["windows"])
    assert "DRIFT" in (tmp_path / "report" / "index.html").read_text()


def test_without_a_baseline_the_report_says_so(tmp_path):
    captured = tmp_path / "captured"
    write_captures(captured, scores(np.random.default_rng(4), 10, 0.6, 1.0))
    summary = monitor("--source", captured, "--out", tmp_path / "report", "--workdir", tmp_path / "work")
    assert summary["drift"]["unavailable"].startswith("no drift check")


def test_what_the_page_shows_is_escaped(tmp_path):
    captured = tmp_path / "<script>alert(1)</script>"
    write_captures(captured, scores(np.random.default_rng(5), 5, 0.6, 1.0))
    summary = monitor("--source", captured, "--out", tmp_path / "report", "--workdir", tmp_path / "work")
    html = Path(summary["report"]).read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("command", ["monitor", "captures"])
def test_a_missing_folder_is_a_named_error_as_a_missing_bucket_is(tmp_path, command):
    result = CliRunner().invoke(cli.app, [command, "--source", str(tmp_path / "nothing-here")], prog_name="scones")
    assert result.exit_code == EXIT_FAILED  # what a missing bucket gives too (CaptureError)
    assert "is not a folder" in result.stderr
