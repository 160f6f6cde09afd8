"""The threshold chosen from data: temperature scaling, the choice on known small inputs and its fallbacks,
model.json carrying both, and deploy passing model.json's threshold to the stack unless --threshold overrides."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cloud import deploy
from cloud.aws import AwsTarget
from lambdas.contract import DEFAULT_CONFIDENCE_THRESHOLD
from local_model import classifier, threshold
from local_model.classifier import META_FILE, load_model_dir, probabilities
from local_model.threshold import (
    MIN_VALIDATION_IMAGES,
    choose_threshold,
    fit_temperature,
    precision_coverage_curve,
    wilson_interval,
)
from scones.pipeline import deployment
from scones.pipeline.deployment import DeployOptions, ModelThresholdError, deploy_to_emulator, resolve_threshold
from scones.pipeline.steps import ModelPaths
from tests.helpers.image_samples import make_model_dir


def two_class(scores, correct):
    """(N, 2) probabilities whose top-class probability is `scores` and whose labels are right where `correct`."""
    scores = np.asarray(scores, dtype=float)
    probs = np.stack([scores, 1 - scores], axis=1)
    labels = np.where(np.asarray(correct), 0, 1)
    return probs, labels


def test_the_lowest_threshold_reaching_the_target_is_chosen_with_its_precision_and_coverage():
    # 60 images: 40 right at 0.99, one wrong at 0.95, 9 right at 0.90, 10 wrong at 0.70.
    scores = [0.99] * 40 + [0.95] + [0.90] * 9 + [0.70] * 10
    correct = [True] * 40 + [False] + [True] * 9 + [False] * 10
    probs, labels = two_class(scores, correct)
    # At 0.90: 49 of 50 right (0.98); at 0.95: 40 of 41 (0.976); at 0.99: 40 of 40.
    assert choose_threshold(probs, labels, 0.99) == {
        "target_precision": 0.99,
        "n_images": 60,
        "decimals": 4,
        "value": 0.99,
        "precision": 1.0,
        "coverage": 40 / 60,
        "source": "validation",
    }
    lower = choose_threshold(probs, labels, 0.98)
    assert (lower["value"], lower["precision"], lower["coverage"]) == (0.9, 49 / 50, 50 / 60)


def test_thresholds_are_floored_to_four_decimals_and_measured_as_floored():
    probs, labels = two_class([0.987654] * 50, [True] * 50)
    chosen = choose_threshold(probs, labels, 0.99)
    assert chosen["value"] == 0.9876 and chosen["coverage"] == 1.0


def test_a_tiny_validation_split_falls_back_with_a_warning(caplog):
    probs, labels = two_class([0.99] * (MIN_VALIDATION_IMAGES - 1), [True] * (MIN_VALIDATION_IMAGES - 1))
    with caplog.at_level(logging.WARNING, logger=threshold.__name__):
        chosen = choose_threshold(probs, labels, 0.99)
    assert chosen["value"] is None and chosen["source"] == "fallback"
    assert f"fewer than {MIN_VALIDATION_IMAGES}" in chosen["reason"]
    assert "default threshold" in caplog.text


def test_no_threshold_reaching_the_target_falls_back_naming_the_best_precision():
    probs, labels = two_class([0.99] * 10 + [0.8] * 50, [False] + [True] * 9 + [True] * 50)  # the surest is wrong
    chosen = choose_threshold(probs, labels, 0.99)
    assert chosen["value"] is None
    assert chosen["reason"] == "no threshold reaches routed precision 0.99 on 60 validation images (best 0.983)"


def test_the_curve_on_known_inputs():
    curve = precision_coverage_curve([0.6, 0.8, 0.8, 0.95], [False, True, False, True])
    assert curve == [(0.6, 0.5, 1.0), (0.8, 2 / 3, 0.75), (0.95, 1.0, 0.25)]


def test_temperature_scaling_recovers_an_overconfident_scale():
    rng = np.random.default_rng(0)
    true_logits = torch.tensor(rng.normal(0, 2, (4000, 2)), dtype=torch.float32)
    labels = np.array([rng.choice(2, p=p) for p in torch.softmax(true_logits, 1).numpy()])
    logits = (3.0 * true_logits)[None]  # one member, one view, three times too sure
    fitted = fit_temperature(logits, labels)
    assert abs(fitted - 3.0) < 0.3
    nll = threshold.negative_log_likelihood
    assert nll(logits, labels, fitted) < nll(logits, labels, 1.0)


def test_served_scores_are_divided_by_the_temperature_and_an_old_model_json_means_one(tmp_path):
    model_dir = make_model_dir(tmp_path / "model")
    meta = json.loads((model_dir / META_FILE).read_text())
    del meta["temperature"], meta["confidence_threshold"]  # as written before either existed
    (model_dir / META_FILE).write_text(json.dumps(meta))
    model = load_model_dir(model_dir)
    assert model.meta.temperature == 1.0
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    logits = model.logits(images)
    np.testing.assert_allclose(model.predict_proba(images), probabilities(logits).numpy(), rtol=1e-6)
    model.meta.temperature = 2.5
    expected = torch.softmax(logits / 2.5, -1).mean(0).numpy()
    np.testing.assert_allclose(model.predict_proba(images), expected, rtol=1e-6)
    assert not np.allclose(expected, probabilities(logits).numpy())


def test_training_writes_the_temperature_and_the_threshold_choice_into_model_json(tmp_path):
    from test_train import TINY, make_folder

    from local_model import train

    model_dir = tmp_path / "model"
    train.train_from_folder(
        make_folder(tmp_path / "data", per_class=30), model_dir, {**TINY, "val_fraction": "0.2", "calibrate": "true"}
    )
    meta = json.loads((model_dir / META_FILE).read_text())
    chosen = meta["confidence_threshold"]
    assert meta["temperature"] > 0 and chosen["temperature"] == meta["temperature"]
    assert chosen["nll_calibrated"] <= chosen["nll_uncalibrated"]
    # 12 validation images: fewer than the minimum, so the fallback is recorded with its reason.
    assert chosen["n_images"] == 12 and chosen["value"] is None and chosen["source"] == "fallback"
    assert chosen["target_precision"] == 0.99 and "fewer than" in chosen["reason"]
    assert meta["hyperparameters"]["routed_precision_target"] == 0.99


def write_meta(model_dir, chosen: dict | None):
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {"classes": list(classifier.CLASSES)}
    if chosen is not None:
        meta["confidence_threshold"] = chosen
    (model_dir / META_FILE).write_text(json.dumps(meta))
    return model_dir


CHOSEN = {"value": 0.8765, "precision": 1.0, "coverage": 0.71, "n_images": 80, "target_precision": 0.99}


def test_the_threshold_comes_from_model_json_unless_overridden(tmp_path):
    model_dir = write_meta(tmp_path / "m", CHOSEN)
    chosen = resolve_threshold(None, model_dir)
    assert chosen.value == 0.8765
    assert chosen.source == "model.json: routed precision 1.000 at coverage 71% on 80 validation images (target 0.99)"
    assert resolve_threshold(0.5, model_dir) == deployment.ChosenThreshold(0.5, "--threshold")
    cross_fitted = write_meta(tmp_path / "cf", {**CHOSEN, "n_images": 1000, "source": "out-of-fold"})
    assert resolve_threshold(None, cross_fitted).source == (
        "model.json: routed precision 1.000 at coverage 71% on 1000 out-of-fold training images (target 0.99)"
    )


@pytest.mark.parametrize(
    ("chosen", "source"),
    [
        ({"value": None, "reason": "the validation split has 16 images"}, "fallback default: the validation split"),
        (None, "default: "),  # a model.json from before thresholds were chosen
    ],
)
def test_without_a_chosen_threshold_the_one_default_is_used_and_said(tmp_path, chosen, source):
    result = resolve_threshold(None, write_meta(tmp_path / "m", chosen))
    assert result.value == DEFAULT_CONFIDENCE_THRESHOLD and result.source.startswith(source)
    assert resolve_threshold(None, tmp_path / "nothing-here").value == DEFAULT_CONFIDENCE_THRESHOLD


def test_a_threshold_that_is_not_a_probability_is_a_named_error(tmp_path):
    with pytest.raises(ModelThresholdError, match=r"1\.5 is not a probability"):
        resolve_threshold(None, write_meta(tmp_path / "m", {**CHOSEN, "value": 1.5}))
    (tmp_path / "m" / META_FILE).write_text("{not json")
    with pytest.raises(ModelThresholdError, match="not a readable model description"):
        resolve_threshold(None, tmp_path / "m")


@pytest.mark.parametrize(("override", "expected"), [(None, 0.8765), (0.61, 0.61)])
def test_deploy_gives_the_stack_model_jsons_threshold_and_says_where_it_came_from(
    tmp_path, monkeypatch, override, expected
):
    model_dir = write_meta(tmp_path / "opt_ml" / "model", CHOSEN)
    deployed = {}

    def fake_deploy_stack(config, target, **kwargs):
        # What cloud/deploy.py sends to CloudFormation; the template's ConfidenceThreshold output is !Ref of it.
        parameters = deploy.stack_parameters(config, "bucket", {})
        deployed.update({p["ParameterKey"]: p["ParameterValue"] for p in parameters})
        return {"ConfidenceThreshold": deployed["ConfidenceThreshold"]}

    monkeypatch.setattr(deployment, "deploy_stack", fake_deploy_stack)
    said = []
    options = DeployOptions(stack_name="s", threshold=override, model_url="http://model:8080")
    paths = ModelPaths(opt_ml=tmp_path / "opt_ml", model_dir=model_dir, tarball=tmp_path / "none.tar.gz")
    connection = SimpleNamespace(aws=AwsTarget())  # the fake deploy makes no AWS call
    result = deploy_to_emulator(connection, options, paths, tmp_path, said.append)
    assert float(result.outputs["ConfidenceThreshold"]) == expected == result.threshold.value
    source = "--threshold" if override else "model.json: routed precision"
    assert any(line.startswith(f"confidence threshold {expected} ({source}") for line in said), said


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (5, 10, (0.2366, 0.7634)),  # the textbook example
        (0, 10, (0.0, 0.2775)),  # z^2 / (n + z^2) above, exactly 0 below
        (10, 10, (0.7225, 1.0)),
        (148, 149, (0.9630, 0.9988)),  # the demo's routed precision in docs/measured.md
    ],
)
def test_wilson_interval_matches_the_closed_form(successes, trials, expected):
    low, high = wilson_interval(successes, trials)
    assert (round(low, 4), round(high, 4)) == expected
    assert low <= successes / trials <= high


def test_wilson_interval_of_no_trials_is_none():
    assert wilson_interval(0, 0) is None
