"""Benchmark: how often does drift detection (scones/monitoring/drift.py) flag windows of real images, unshifted
and shifted, for a few window sizes? It chooses the default PSI threshold and minimum window.

In each of --folds stratified folds of --data-dir, the fold's images are put aside as "production
traffic" the model never sees in training; a model is trained on the rest exactly as `train` does (its
validation split, held out by val_fraction, gives the baseline.json that monitoring reads). The pool is
scored as is (the baseline stream: every flag there is a false alarm) and shifted (darkened, rotated,
noisy, one class dominating: every miss there is a missed drift); random windows are drawn from the pool's
scores (with replacement) and each is judged by detect_drift. Reported per shift and window size: the
median statistics and the share of windows flagged by the PSI rule and, for comparison, by the two tests.

    python benchmarks/drift.py --data-dir ../shared/data/cifar100-bikes/train --recipe quick --folds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from local_model.baseline import load_baseline
from local_model.classifier import load_model_dir
from local_model.data import ImageSet, load_image_folder, stratified_folds
from local_model.train import Hyperparameters, train_model
from scones.monitoring.drift import DEFAULT_P_VALUE, DEFAULT_PSI_THRESHOLD, detect_drift
from scones.monitoring.report import percentile

# The integration suite's model (tests/integration/conftest.py QUICK_HYPERPARAMETERS), ~20 s; "full" is
# the shipped recipe (local_model/train.py defaults), ~3 min per fold on two cores.
RECIPES = {
    "quick": {"epochs": "10", "width": "8", "autoaugment": "false", "label_smoothing": "0.0"},
    "full": {},
}
P_VALUE = DEFAULT_P_VALUE  # the two tests' level when they are shown alone


def darken(factor: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    return lambda images, _rng: (images.astype(np.float32) * factor).round().clip(0, 255).astype(np.uint8)


def rotate90(images: np.ndarray, _rng) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(images, k=1, axes=(1, 2)))


def upside_down(images: np.ndarray, _rng) -> np.ndarray:
    return np.ascontiguousarray(images[:, ::-1])


def noise(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def add(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (images + rng.normal(0, sigma, images.shape)).round().clip(0, 255).astype(np.uint8)

    return add


# name -> (pixel transform, share of the window drawn from class 0 (None: the pool's own mix))
SHIFTS: dict[str, tuple[Callable | None, float | None]] = {
    "none (baseline stream)": (None, None),
    "darkened x0.4": (darken(0.4), None),
    "darkened x0.7": (darken(0.7), None),
    "rotated 90": (rotate90, None),
    "upside down": (upside_down, None),
    "noise sigma 25": (noise(25.0), None),
    "90% bicycle": (None, 0.9),
    "90% motorcycle": (None, 0.1),
}


def draw_window(labels: np.ndarray, size: int, class0_share: float | None, rng: np.random.Generator) -> np.ndarray:
    if class0_share is None:
        return rng.integers(0, len(labels), size)
    n0 = round(size * class0_share)
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == 0), n0), rng.choice(np.flatnonzero(labels != 0), size - n0)]
    )


def run_fold(data: ImageSet, pool_idx: np.ndarray, hp: Hyperparameters, args, rng, fold: int) -> list[dict]:
    rest, pool = data.subset(np.setdiff1d(np.arange(len(data)), pool_idx)), data.subset(pool_idx)
    with tempfile.TemporaryDirectory() as model_dir:
        train_model(rest, Path(model_dir), hp)
        classifier, baseline = load_model_dir(Path(model_dir)), load_baseline(Path(model_dir))
    rows = []
    for name, (transform, class0_share) in SHIFTS.items():
        images = transform(pool.images, rng) if transform else pool.images
        probs = classifier.predict_proba(images)
        top, predicted = probs.max(1), [baseline.classes[i] for i in probs.argmax(1)]
        correct = probs.argmax(1) == pool.labels
        for size in args.window_sizes:
            reports, accuracies = [], []
            for _ in range(args.windows):
                idx = draw_window(pool.labels, size, class0_share, rng)
                accuracies.append(correct[idx].mean())
                reports.append(detect_drift(baseline, top[idx].tolist(), [predicted[i] for i in idx], min_window=1))
            rows.append(
                {
                    "shift": name,
                    "window": size,
                    "fold": fold,
                    "accuracy": float(np.mean(accuracies)),  # of the model on the windows' images
                    "baseline_n": baseline.n_images,
                    "psi_confidence_median": percentile([r.psi_confidence for r in reports], 50),
                    "psi_confidence_p95": percentile([r.psi_confidence for r in reports], 95),
                    "psi_classes_median": percentile([r.psi_classes for r in reports], 50),
                    "psi_max_p95": percentile([max(r.psi_confidence, r.psi_classes) for r in reports], 95),
                    "psi_max_p5": percentile([max(r.psi_confidence, r.psi_classes) for r in reports], 5),
                    "flagged": float(np.mean([r.drifted for r in reports])),
                    "flagged_psi_only": float(
                        np.mean([max(r.psi_confidence, r.psi_classes) > r.psi_threshold for r in reports])
                    ),
                    "flagged_ks": float(np.mean([r.ks_p_value < P_VALUE for r in reports])),
                    "flagged_chi2": float(np.mean([r.chi2_p_value < P_VALUE for r in reports])),
                    "mean_confidence": float(np.mean([r.mean_confidence for r in reports])),
                }
            )
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Average the folds' rows per (shift, window); worst-case percentiles are the folds' extremes."""
    out = []
    keys = sorted({(r["shift"], r["window"]) for r in rows}, key=lambda k: (list(SHIFTS).index(k[0]), k[1]))
    for shift, window in keys:
        group = [r for r in rows if r["shift"] == shift and r["window"] == window]
        row = {"shift": shift, "window": window, "folds": len(group)}
        for k in group[0]:
            if k in ("shift", "window", "fold"):
                continue
            values = [g[k] for g in group]
            row[k] = max(values) if k == "psi_max_p95" else min(values) if k == "psi_max_p5" else float(np.mean(values))
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding bicycle/ and motorcycle/")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="quick")
    parser.add_argument("--folds", type=int, default=3, help="folds; each trains one model (>= 2)")
    parser.add_argument("--window-sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--windows", type=int, default=300, help="random windows per shift and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    data = load_image_folder(args.data_dir)
    hp = Hyperparameters.from_dict({**RECIPES[args.recipe], "seed": str(args.seed)})
    rng = np.random.default_rng(args.seed)
    folds = stratified_folds(data.labels, max(2, args.folds), args.seed)
    rows = []
    for fold, pool_idx in enumerate(tqdm(folds[: args.folds], desc="folds", unit="fold", file=sys.stderr)):
        rows += run_fold(data, pool_idx, hp, args, rng, fold)
    summary = summarize(rows)
    print(
        f"recipe {args.recipe}, {args.folds} folds of {len(data)} images, {args.windows} windows per cell, "
        f"FLAGGED = the rule (PSI > {DEFAULT_PSI_THRESHOLD} and p < {DEFAULT_P_VALUE} on a view); the others alone"
    )
    header = f"{'shift':24} {'window':>6} {'PSI conf':>8} {'PSI cls':>8} {'maxPSI p5':>9} {'maxPSI p95':>10} "
    print(header + f"{'FLAGGED':>8} {'PSI only':>8} {'KS only':>8} {'chi2 only':>9} {'accuracy':>8}")
    for r in summary:
        print(
            f"{r['shift']:24} {r['window']:>6} {r['psi_confidence_median']:>8.3f} {r['psi_classes_median']:>8.3f} "
            f"{r['psi_max_p5']:>9.3f} {r['psi_max_p95']:>10.3f} {r['flagged']:>8.1%} {r['flagged_psi_only']:>8.1%} "
            f"{r['flagged_ks']:>8.1%} {r['flagged_chi2']:>9.1%} {r['accuracy']:>8.1%}"
        )
    # Each fold is its own model: a shift one model ignores another may notice.
    detail = [r for r in rows if r["window"] == args.window_sizes[-1]]
    print(f"\nper fold, {args.window_sizes[-1]}-image windows: share flagged (model accuracy on the shifted images)")
    for shift in SHIFTS:
        cells = [f"{r['flagged']:>6.1%} ({r['accuracy']:.1%})" for r in detail if r["shift"] == shift]
        print(f"{shift:24} " + "  ".join(cells))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
