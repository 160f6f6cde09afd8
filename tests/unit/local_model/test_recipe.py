"""The recipe's cross-fitted calibration: used for exactly the hyperparameters it was measured for."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from local_model import recipe, train
from local_model.baseline import build_baseline, load_baseline
from local_model.classifier import CLASSES
from local_model.recipe import RecipeCalibrationError, recipe_calibration
from local_model.train import Hyperparameters
from tests.unit.local_model.test_train import TINY, make_folder


def write_calibration(path, hyperparameters: dict, value: float = 0.8123):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    path.write_text(
        json.dumps(
            {
                "hyperparameters": {k: v for k, v in hyperparameters.items() if k not in recipe.FREE_HYPERPARAMETERS},
                "threshold": {"value": value, "precision": 0.995, "coverage": 0.93, "n_images": 1000},
                "baseline": build_baseline(probs, list(CLASSES), "out-of-fold predictions (3 images)").to_dict(),
            }
        )
    )
    return path


def tiny_recipe() -> dict:
    return asdict(Hyperparameters.from_dict({**TINY, "val_fraction": "0"}))


def test_the_calibration_applies_to_its_own_hyperparameters_whatever_the_seed(tmp_path):
    path = write_calibration(tmp_path / "cal.json", tiny_recipe())
    calibration, why_not = recipe_calibration({**tiny_recipe(), "seed": 7, "parallel_networks": 2}, path)
    assert why_not == "" and calibration["threshold"]["value"] == 0.8123


def test_other_hyperparameters_are_named(tmp_path):
    path = write_calibration(tmp_path / "cal.json", tiny_recipe())
    calibration, why_not = recipe_calibration({**tiny_recipe(), "epochs": 15}, path)
    assert calibration is None
    assert why_not == "the recipe calibration was measured for other hyperparameters: epochs=15 (measured: 2)"


@pytest.mark.parametrize(
    "content", ["{", "[]", '{"hyperparameters": {}}', '{"hyperparameters": {}, "threshold": {"value": 2}}']
)
def test_a_malformed_calibration_is_a_named_error(tmp_path, content):
    path = tmp_path / "cal.json"
    path.write_text(content)
    with pytest.raises(RecipeCalibrationError, match="is not a recipe calibration"):
        recipe_calibration(tiny_recipe(), path)


def test_training_without_a_split_takes_the_recipe_threshold_and_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "RECIPE_CALIBRATION_FILE", write_calibration(tmp_path / "cal.json", tiny_recipe()))
    model_dir = tmp_path / "model"
    train.train_from_folder(make_folder(tmp_path / "data"), model_dir, {**TINY, "val_fraction": "0"})
    chosen = json.loads((model_dir / "model.json").read_text())["confidence_threshold"]
    assert chosen["value"] == 0.8123 and chosen["source"] == "cross-fitted recipe"
    assert load_baseline(model_dir).source == "out-of-fold predictions (3 images)"


def test_training_another_recipe_without_a_split_falls_back_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "RECIPE_CALIBRATION_FILE", write_calibration(tmp_path / "cal.json", tiny_recipe()))
    model_dir = tmp_path / "model"
    train.train_from_folder(make_folder(tmp_path / "data"), model_dir, {**TINY, "val_fraction": "0", "epochs": "1"})
    chosen = json.loads((model_dir / "model.json").read_text())["confidence_threshold"]
    assert chosen["value"] is None and chosen["source"] == "fallback"
    assert "epochs=1 (measured: 2)" in chosen["reason"]


def test_the_committed_calibration_is_for_the_default_recipe():
    # Changing a default hyperparameter without rerunning benchmarks/threshold_choice.py
    # --write-recipe-calibration would leave every default training without its threshold.
    calibration, why_not = recipe_calibration(asdict(Hyperparameters()))
    assert why_not == ""
    assert calibration["threshold"]["source"] == "cross-fitted" and calibration["threshold"]["n_images"] == 1000
    assert calibration["baseline"]["n_images"] == 1000
