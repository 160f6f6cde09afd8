"""The pipeline's steps as the command line prints them: the evaluation with its intervals, the trained model."""

from __future__ import annotations

from scones.pipeline import steps


def test_the_evaluation_prints_routed_precision_and_coverage_with_their_wilson_intervals():
    report = {
        "accuracy": 0.96,
        "n_images": 200,
        "confusion_matrix": [[97, 3], [5, 95]],
        "threshold": 0.9011,
        "threshold_source": "model.json",
        "routed_fraction": 149 / 200,
        "routed_accuracy": 148 / 149,
        "routed": 149,
        "routed_correct": 148,
        "test_is_holdout": True,
    }
    text = steps.format_evaluation(report)
    assert "accuracy 0.960 on 200 held-out training images" in text
    # 148/149 and 149/200 with their 95% Wilson intervals (the closed form is checked in test_threshold.py).
    assert "routed precision 0.993 (95% CI 0.963-0.999) (148 of 149 to their true class)" in text
    assert "coverage 0.745 (95% CI 0.680-0.800) (share routed, 149 of 200)" in text


def test_the_recipe_is_described_with_its_networks():
    assert steps.describe_recipe(False, {}) == "full recipe (2 networks x 200 epochs)"
    assert steps.describe_recipe(True, {}) == "quick recipe (15 epochs)"  # one network
    assert steps.describe_recipe(False, {"epochs": "50", "lr": "0.1"}) == "full recipe (2 networks x 50 epochs, lr=0.1)"
