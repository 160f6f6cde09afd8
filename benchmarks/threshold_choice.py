"""Benchmark: does temperature scaling help coverage at the routed-precision target? And does a threshold
chosen on training's validation split hold its precision on images it never saw?

Stratified k-fold cross-validation on --data-dir. In each fold the training part is split as training splits
it (val_fraction, seed) into a training and a validation split; one model is trained; then, with the
temperature fitted on the validation split and with T = 1 (uncalibrated, the same network), the threshold is
chosen on the validation split exactly as training chooses it (local_model/threshold.py) and measured on the
held-out fold: routed precision and coverage (share routed). The fixed default threshold is measured too.

    python benchmarks/threshold_choice.py --data-dir ../shared/data/cifar100-bikes/train --folds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from folds import add_fold_arguments, append_json, prepare, run_folds

from cloud.defaults import DEFAULT_CONFIDENCE_THRESHOLD
from local_model.classifier import load_model_dir, probabilities
from local_model.data import holdout_split
from local_model.threshold import choose_threshold, fit_temperature, routed_precision_coverage
from local_model.train import Hyperparameters, train_model


def measure(threshold: float | None, probs: np.ndarray, labels: np.ndarray) -> dict:
    if threshold is None:
        return {"threshold": None, "precision": None, "coverage": None}
    precision, coverage = routed_precision_coverage(probs.max(1), probs.argmax(1) == labels, threshold)
    return {"threshold": threshold, "precision": precision, "coverage": coverage}


def run_fold(data, train_idx, test_idx, hp: Hyperparameters) -> dict:
    train_all = data.subset(train_idx)
    fit_idx, val_idx = holdout_split(train_all.labels, hp.val_fraction, hp.seed)
    train_part, val, test = train_all.subset(fit_idx), train_all.subset(val_idx), data.subset(test_idx)
    with tempfile.TemporaryDirectory() as model_dir:
        train_model(train_part, Path(model_dir), hp, validation=val)
        classifier = load_model_dir(Path(model_dir))
    val_logits, test_logits = classifier.logits(val.images), classifier.logits(test.images)
    fitted = fit_temperature(val_logits, val.labels)
    result = {"n_validation": len(val), "n_test": len(test), "temperature": fitted}
    for name, temperature in (("uncalibrated", 1.0), ("calibrated", fitted)):
        val_probs = probabilities(val_logits, temperature).numpy()
        test_probs = probabilities(test_logits, temperature).numpy()
        chosen = choose_threshold(val_probs, val.labels, hp.routed_precision_target)
        result[name] = {
            "accuracy": float((test_probs.argmax(1) == test.labels).mean()),
            "chosen_on_validation": {k: chosen.get(k) for k in ("value", "precision", "coverage", "source")},
            "chosen_on_test": measure(chosen["value"], test_probs, test.labels),
            "default_on_test": measure(DEFAULT_CONFIDENCE_THRESHOLD, test_probs, test.labels),
        }
    return result


def describe(name: str, r: dict) -> str:
    def fmt(m: dict) -> str:
        if m["threshold"] is None:
            return "none chosen (fallback)"
        precision = "n/a" if m["precision"] is None else f"{m['precision']:.3f}"
        return f"t={m['threshold']}: precision {precision}, coverage {m['coverage']:.3f}"

    parts = [f"{name} (T={r['temperature']:.3f}, {r['n_validation']} val / {r['n_test']} test images)"]
    for mode in ("uncalibrated", "calibrated"):
        m = r[mode]
        parts.append(
            f"  {mode:<12} accuracy {m['accuracy']:.3f} | chosen {fmt(m['chosen_on_test'])} | "
            f"default {fmt(m['default_on_test'])}"
        )
    return "\n".join(parts)


def mean_of(results: list[dict], mode: str, which: str, key: str) -> float | None:
    values = [r[mode][which][key] for r in results if r[mode][which][key] is not None]
    return float(np.mean(values)) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fold_arguments(parser)
    args = parser.parse_args()
    hp, data = prepare(args)
    results = run_folds(
        data, args, lambda train, held: run_fold(data, train, held, hp), lambda n, r: print(describe(n, r), flush=True)
    )
    summary = {"hyperparameters": vars(hp), "folds": args.folds, "runs": results}
    print(f"SUMMARY over {len(results)} fold(s), target routed precision {hp.routed_precision_target}:")
    for mode in ("uncalibrated", "calibrated"):
        fallbacks = sum(r[mode]["chosen_on_validation"]["value"] is None for r in results)
        numbers = {
            f"{which}_{key}": mean_of(results, mode, which, key)
            for which in ("chosen_on_test", "default_on_test")
            for key in ("threshold", "precision", "coverage")
        }
        summary[mode] = {**numbers, "fallbacks": fallbacks}
        shown = {k: "n/a" if v is None else f"{v:.3f}" for k, v in numbers.items()}
        print(
            f"  {mode:<12} chosen threshold mean {shown['chosen_on_test_threshold']}: held-out precision "
            f"{shown['chosen_on_test_precision']}, coverage {shown['chosen_on_test_coverage']} "
            f"({fallbacks} fold(s) fell back) | default {DEFAULT_CONFIDENCE_THRESHOLD}: precision "
            f"{shown['default_on_test_precision']}, coverage {shown['default_on_test_coverage']}"
        )
    append_json(args.json_out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
