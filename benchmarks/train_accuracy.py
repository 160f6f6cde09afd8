"""Benchmark: held-out accuracy, confusion matrix, train time and images/s of the training recipe.

With --test-dir: train on every image in --data-dir, evaluate on the labelled folder --test-dir
(e.g. the staged CIFAR-100 test split). Without it: stratified k-fold cross-validation on
--data-dir (each fold held out once), which is how the hyperparameters were chosen.

    python benchmarks/train_accuracy.py --data-dir ../shared/data/cifar100-bikes/train --folds 5
    python benchmarks/train_accuracy.py --data-dir data/train --test-dir data/test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from folds import add_fold_arguments, append_json, prepare, run_folds

from cloud.defaults import DEFAULT_CONFIDENCE_THRESHOLD
from local_model.classifier import CLASSES, load_model_dir
from local_model.data import load_image_folder
from local_model.train import Hyperparameters, evaluate, train_model


def run_once(train, test, hp: Hyperparameters) -> dict:
    with tempfile.TemporaryDirectory() as model_dir:
        start = time.perf_counter()
        metrics = train_model(train, Path(model_dir), replace(hp, val_fraction=0.0))
        wall = time.perf_counter() - start
        result = evaluate(load_model_dir(Path(model_dir)), test, threshold=DEFAULT_CONFIDENCE_THRESHOLD)
    result.update(
        train_seconds=metrics["train_seconds"], wall_seconds=wall, train_images_per_s=metrics["train_images_per_s"]
    )
    return result


def print_result(name: str, r: dict) -> None:
    cm = r["confusion_matrix"]
    print(
        f"{name}: accuracy {r['accuracy']:.3f} on {r['n_images']} images | train {r['train_seconds']:.1f} s "
        f"({r['train_images_per_s']:.0f} img/s) | inference {r['inference_images_per_s']:.0f} img/s | "
        f"confusion (rows true {'/'.join(CLASSES)}) {cm} | routed at {r['threshold']}: "
        f"{r['routed_fraction']:.2f} of images, accuracy {r['routed_accuracy'] or 0:.3f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fold_arguments(parser)
    parser.add_argument("--test-dir", type=Path, help="labelled folder to evaluate on (else k-fold CV)")
    args = parser.parse_args()
    hp, data = prepare(args)
    if args.test_dir:
        results = [run_once(data, load_image_folder(args.test_dir), hp)]
        print_result(f"test {args.test_dir}", results[0])
    else:

        def fold(train_idx, held_idx):
            return run_once(data.subset(train_idx), data.subset(held_idx), hp)

        results = run_folds(data, args, fold, print_result)
    accs = [r["accuracy"] for r in results]
    summary = {
        "hyperparameters": vars(hp),
        "mode": "test-dir" if args.test_dir else f"{args.folds}-fold",
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_min": float(np.min(accs)),
        "accuracy_max": float(np.max(accs)),
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in results])),
        "confusion_matrix_total": np.sum([r["confusion_matrix"] for r in results], axis=0).tolist(),
        "routed_fraction_mean": float(np.mean([r["routed_fraction"] for r in results])),
        "runs": results,
    }
    print(
        f"SUMMARY accuracy mean {summary['accuracy_mean']:.4f} (min {summary['accuracy_min']:.3f}, "
        f"max {summary['accuracy_max']:.3f}) over {len(results)} run(s); "
        f"train {summary['train_seconds_mean']:.1f} s mean; confusion {summary['confusion_matrix_total']}; "
        f"routed at the workflow's threshold {summary['routed_fraction_mean']:.2f}"
    )
    append_json(args.json_out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
