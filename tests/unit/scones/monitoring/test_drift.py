"""Drift detection maths (PSI, KS, chi-square), the decision rule and the baseline file's errors."""

from __future__ import annotations

import json
import math
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from local_model.baseline import (
    BASELINE_FILE,
    CONFIDENCE_BIN_EDGES,
    Baseline,
    BaselineError,
    NoBaselineError,
    build_baseline,
    load_baseline,
    save_baseline,
)
from scones.monitoring.drift import (
    DEFAULT_MIN_WINDOW,
    DEFAULT_PSI_THRESHOLD,
    DriftInputError,
    detect_drift,
    drift_by_window,
    population_stability_index,
    scores_of,
)

CLASSES = ["bicycle", "motorcycle"]


def probs_of(top: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N, 2) probabilities with the given top-class probability and predicted class index."""
    probs = np.empty((len(top), 2))
    probs[np.arange(len(top)), predicted] = top
    probs[np.arange(len(top)), 1 - predicted] = 1 - top
    return probs


def confident_baseline(n: int = 200, seed: int = 0) -> tuple[Baseline, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    top = 1 - rng.beta(1, 30, n) * 0.5  # most scores near 1, as a trained model's
    predicted = rng.integers(0, 2, n)
    return build_baseline(probs_of(top, predicted), CLASSES, "test"), top, predicted


def test_psi_of_identical_shares_is_zero_and_grows_with_the_shift():
    assert population_stability_index([10, 20, 70], [10, 20, 70]) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index([10, 20, 70], [20, 40, 140]) == pytest.approx(0.0, abs=1e-3)
    small = population_stability_index([50, 50], [55, 45])
    large = population_stability_index([50, 50], [90, 10])
    assert 0 < small < 0.05 < DEFAULT_PSI_THRESHOLD < large


def test_psi_matches_the_formula_and_is_finite_with_empty_bins():
    e, a = np.array([30, 70]) + 0.5, np.array([60, 40]) + 0.5
    e, a = e / e.sum(), a / a.sum()
    assert population_stability_index([30, 70], [60, 40]) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    empty_on_both_sides = population_stability_index([0, 100, 0], [100, 0, 0])
    assert math.isfinite(empty_on_both_sides) and empty_on_both_sides > 5
    with pytest.raises(DriftInputError):
        population_stability_index([1, 2], [1, 2, 3])


def test_the_baseline_stream_is_not_drift_and_a_darker_one_is():
    baseline, top, predicted = confident_baseline()
    same = detect_drift(baseline, top.tolist(), [CLASSES[i] for i in predicted])
    assert same.enough_data and not same.drifted
    assert same.psi_confidence == pytest.approx(0.0, abs=1e-9) and same.psi_classes == pytest.approx(0.0, abs=1e-9)
    assert same.ks_statistic == pytest.approx(0.0, abs=0.01) and same.ks_p_value == pytest.approx(1.0)
    assert same.chi2_p_value == pytest.approx(1.0)
    assert same.reason.startswith("no drift")
    unsure = 0.5 + (top - 0.5) * 0.4  # every score pulled towards 0.5, as darkened images are
    shifted = detect_drift(baseline, unsure.tolist(), [CLASSES[i] for i in predicted])
    assert shifted.drifted and shifted.psi_confidence > DEFAULT_PSI_THRESHOLD
    assert shifted.ks_p_value < 1e-6 and shifted.reason.startswith("drift: confidence PSI")
    assert shifted.to_dict()["drifted"] is True and shifted.to_dict()["psi_threshold"] == DEFAULT_PSI_THRESHOLD


def test_a_class_mix_shift_is_drift_on_the_class_shares():
    baseline, top, _ = confident_baseline()
    rng = np.random.default_rng(1)
    classes = ["motorcycle" if rng.random() < 0.9 else "bicycle" for _ in top]
    report = detect_drift(baseline, top.tolist(), classes)
    assert report.drifted and report.psi_classes > DEFAULT_PSI_THRESHOLD
    assert report.chi2_p_value < 1e-6 and "class-share PSI" in report.reason


def test_a_small_window_is_not_enough_data():
    baseline, _top, _predicted = confident_baseline()
    n = DEFAULT_MIN_WINDOW - 1
    report = detect_drift(baseline, [0.5] * n, ["bicycle"] * n)  # would be drift with enough data
    assert not report.enough_data and not report.drifted
    assert report.psi_confidence is None and report.ks_p_value is None
    assert report.reason == f"not enough data: {n} inferences in the window, drift needs at least {DEFAULT_MIN_WINDOW}"
    assert not detect_drift(baseline, [], []).enough_data


@pytest.mark.parametrize(
    ("confidences", "classes", "message"),
    [([0.9], [], "1 confidences but 0 classes"), ([0.9], ["car"], "car"), ([1.5], ["bicycle"], r"\[0, 1\]")],
)
def test_inputs_that_do_not_fit_the_baseline_are_named(confidences, classes, message):
    with pytest.raises(DriftInputError, match=message):
        detect_drift(confident_baseline()[0], confidences, classes)


def test_scores_of_served_answers_counts_what_it_cannot_read():
    outputs = [[0.2, 0.8], [0.9, 0.1], "oops", [0.5], [True, False], [float("nan"), 1.0], None]
    confidences, classes, skipped = scores_of(outputs, CLASSES)
    assert confidences == [0.8, 0.9] and classes == ["motorcycle", "bicycle"] and skipped == 5


def test_drift_by_window_orders_by_inference_time_and_flags_the_shifted_window():
    baseline, top, predicted = confident_baseline()
    served = probs_of(top, predicted)[:60].tolist()
    records = [SimpleNamespace(output=p, inference_time=f"2026-01-01T00:00:{i:02d}Z") for i, p in enumerate(served)]
    records += [
        SimpleNamespace(output=[0.45, 0.55], inference_time=f"2026-01-01T00:01:{i:02d}Z") for i in range(60)
    ] + [SimpleNamespace(output="not scores", inference_time="2026-01-01T00:00:30Z")]
    windows = drift_by_window(reversed(records), baseline, window_size=60)
    assert [w.report.drifted for w in windows] == [False, True]
    assert windows[0].first_inference_time == "2026-01-01T00:00:00Z"
    assert windows[1].last_inference_time == "2026-01-01T00:01:59Z"
    assert windows[1].to_dict()["report"]["n_window"] == 60


def test_baseline_round_trips_through_a_model_dir_and_a_model_tar(tmp_path):
    baseline, _top, _ = confident_baseline(n=50)
    assert baseline.n_images == 50 and sum(baseline.confidence_counts) == 50
    assert baseline.confidence_bin_edges == CONFIDENCE_BIN_EDGES
    save_baseline(tmp_path, baseline)
    assert load_baseline(tmp_path) == baseline
    assert load_baseline(tmp_path / BASELINE_FILE) == baseline
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / BASELINE_FILE, arcname=BASELINE_FILE)
    assert load_baseline(tmp_path / "model.tar.gz") == baseline


def test_a_model_without_a_baseline_says_so(tmp_path):
    with pytest.raises(NoBaselineError, match="without a validation split"):
        load_baseline(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "model.json", arcname="model.json")
    with pytest.raises(NoBaselineError, match=r"holds no baseline\.json"):
        load_baseline(tmp_path / "model.tar.gz")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"classes": ["a", "b"]}', "is not a baseline"),
        ("counts", "inconsistent: n_images 200 but 199"),
        ("edges", "are not increasing"),
    ],
)
def test_a_bad_baseline_file_is_a_named_error(tmp_path, content, message):
    good = json.loads(json.dumps(confident_baseline()[0].to_dict()))
    if content == "counts":
        good["confidence_counts"][0] -= 1 if good["confidence_counts"][0] else -1
        content = json.dumps(good)
        message = "inconsistent: n_images 200 but (199|201) in the confidence bins"
    elif content == "edges":
        good["confidence_bin_edges"] = list(reversed(good["confidence_bin_edges"]))
        content = json.dumps(good)
    (tmp_path / BASELINE_FILE).write_text(content)
    with pytest.raises(BaselineError, match=message):
        load_baseline(tmp_path)
    with pytest.raises(BaselineError, match="neither a model directory"):
        load_baseline(tmp_path / "missing")
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BaselineError, match=r"not a readable model\.tar\.gz"):
        load_baseline(tmp_path / "broken.tar.gz")


def test_drift_needs_both_a_large_psi_and_a_significant_test():
    baseline, top, predicted = confident_baseline()
    rng = np.random.default_rng(2)
    idx = rng.choice(len(top), 60, replace=False)  # a sample of the baseline's own population
    window = (top[idx].tolist(), [CLASSES[i] for i in predicted[idx]])
    noisy = detect_drift(baseline, *window, psi_threshold=0.0)  # any PSI is "large" ...
    assert noisy.psi_confidence > 0 and noisy.ks_p_value > 0.01 and not noisy.drifted  # ... but not significant
    unsure = (0.5 + (top - 0.5) * 0.4).tolist(), [CLASSES[i] for i in predicted]
    assert detect_drift(baseline, *unsure).drifted
    assert not detect_drift(baseline, *unsure, psi_threshold=100.0).drifted  # significant but below the PSI bar
    assert not detect_drift(baseline, *unsure, p_value=0.0).drifted  # no test can reject at level 0
