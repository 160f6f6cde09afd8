"""The training recipe's cross-fitted calibration: the routing threshold and the drift baseline measured for
the default recipe on out-of-fold predictions over the whole training set.

Choosing a threshold needs scores of images the model never saw. A validation split costs the model those
images (on 800 training images, 10% fewer cost about a point of accuracy), and on ~100 images "routed precision
>= 0.99" cannot be told from 0.97. Cross-fitting within every training run (k networks each without one fold)
would cost k more networks than the budget allows. So the recipe is cross-fitted once, by
`benchmarks/threshold_choice.py --write-recipe-calibration`: 5 folds of the 1000 training images, each fold's
model trained on the other 800 and scored on its 200, and the threshold chosen on all 1000 out-of-fold scores
exactly as training would choose it (local_model/threshold.py). The same run estimates honestly how that choice
does on unseen images (nested: each fold judged with the threshold chosen on the other four) and records it.

Training uses this file only for the hyperparameters it was measured with (the seed and the parallelism aside);
any other recipe chooses on its own held-out split, or falls back to the workflow's default and says why.
Standard library only; the file travels into the model image beside this module (local_model/Dockerfile).
"""

from __future__ import annotations

import json
from pathlib import Path

RECIPE_CALIBRATION_FILE = Path(__file__).with_name("recipe_calibration.json")
# Hyperparameters that change neither what the recipe learns on average nor how its scores are distributed.
FREE_HYPERPARAMETERS = frozenset({"seed", "parallel_networks"})


class RecipeCalibrationError(ValueError):
    """The recipe calibration file is unreadable or malformed."""


def recipe_calibration(hyperparameters: dict, path: Path | None = None) -> tuple[dict | None, str]:
    """(the calibration, "") when `hyperparameters` are the recipe it was measured for; else (None, why not)."""
    path = path or RECIPE_CALIBRATION_FILE
    if not path.is_file():
        return None, f"no recipe calibration at {path.name}"
    try:
        raw = json.loads(path.read_text())
        measured_for = dict(raw["hyperparameters"])
        value = raw["threshold"]["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold.value {value!r} is not a probability")
        if not isinstance(raw["baseline"], dict):
            raise TypeError("baseline is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RecipeCalibrationError(f"{path} is not a recipe calibration: {type(e).__name__}: {e}") from e
    differ = sorted(
        name
        for name in set(measured_for) | set(hyperparameters)
        if name not in FREE_HYPERPARAMETERS and measured_for.get(name) != hyperparameters.get(name)
    )
    if differ:
        shown = ", ".join(f"{n}={hyperparameters.get(n)!r} (measured: {measured_for.get(n)!r})" for n in differ[:4])
        return None, f"the recipe calibration was measured for other hyperparameters: {shown}"
    return raw, ""
