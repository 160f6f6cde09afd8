"""Benchmark: does the routing threshold send >= 0.99 of routed images to their true class, and how many images
does it route, on images the model never saw? Every proportion with its 95% Wilson interval.

Stratified k-fold cross-validation on --data-dir (benchmarks/folds.py: seed 1234, the folds every benchmark
holds out). In each fold the training recipe (local_model/train.py, with --set overrides) trains on the
training part and the saved model scores the held-out part. Then, pooled over every held-out image:
- top-class accuracy;
- CROSS-FITTED: each fold judged with the threshold chosen (local_model/threshold.py) on the other folds'
  held-out scores. This is the honest estimate for the recipe's cross-fitted threshold (local_model/recipe.py);
- the thresholds the models chose themselves (validation split, cross-fitted networks, or the recipe file; the
  recipe file was chosen on these very folds, so for it this line is optimistic: read the one above);
- the workflow's default threshold.

    python benchmarks/threshold_choice.py --data-dir ../shared/data/cifar100-bikes/train --folds 5 \
        --save-scores reports/threshold-scores --write-recipe-calibration local_model/recipe_calibration.json
    python benchmarks/threshold_choice.py --data-dir ../shared/data/cifar100-bikes/train \
        --from-scores reports/threshold-scores   # the pooled numbers again, no training

--save-scores DIR keeps each fold's held-out probabilities, logits and labels (fold-K.npz), the scores the
model chose its threshold on and the model itself (fold-K-model/), for what-ifs; --from-scores DIR recomputes the
cross-fitted numbers from them. --from-scores given twice, with runs of other seeds (--set seed=2 after the
default seed=0, for two-network ensembles), judges the ensemble of all their networks, as if trained together.
--write-recipe-calibration FILE writes the threshold chosen on all folds' held-out scores and their drift
baseline, which training then uses for exactly these hyperparameters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from folds import FOLD_SEED, add_fold_arguments, append_json, prepare, run_folds
from folds import folds as fold_indices

from cloud.defaults import DEFAULT_CONFIDENCE_THRESHOLD
from local_model.baseline import build_baseline
from local_model.classifier import CLASSES, load_model_dir, probabilities
from local_model.recipe import FREE_HYPERPARAMETERS, RECIPE_CALIBRATION_FILE
from local_model.threshold import choose_threshold, wilson_interval
from local_model.train import Hyperparameters, train_model


def routed_counts(probs: np.ndarray, labels: np.ndarray, threshold: float | None) -> dict:
    """Counts at `threshold` (None: the model fell back, nothing chosen)."""
    if threshold is None:
        return {"threshold": None, "routed": 0, "routed_correct": 0, "n": len(labels)}
    routed = probs.max(1) >= threshold
    correct = probs.argmax(1) == labels
    return {
        "threshold": threshold,
        "routed": int(routed.sum()),
        "routed_correct": int((routed & correct).sum()),
        "n": len(labels),
    }


def run_fold(data, train_idx, test_idx, hp: Hyperparameters, save_dir: Path | None, fold_no: list[int]) -> dict:
    train, test = data.subset(train_idx), data.subset(test_idx)
    with tempfile.TemporaryDirectory() as model_dir:
        start = time.perf_counter()
        held_out = {}
        metrics = train_model(train, Path(model_dir), hp, held_out_scores=held_out)
        wall = time.perf_counter() - start
        classifier = load_model_dir(Path(model_dir))
        if save_dir:  # the fold's model too, for what-ifs that need the networks (test-time views, subsets)
            save_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(model_dir, save_dir / f"fold-{fold_no[0] + 1}-model", dirs_exist_ok=True)
    probs = classifier.predict_proba(test.images)
    chosen = classifier.meta.confidence_threshold
    fold_no[0] += 1
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
        logits = classifier.logits(test.images).numpy()  # (members * views, N, classes): for what-ifs
        np.savez(
            save_dir / f"fold-{fold_no[0]}.npz",
            probs=probs,
            logits=logits,
            labels=test.labels,
            views=classifier.view_count(),
            held_out_logits=held_out.get("logits", np.empty(0)),  # the scores the threshold was chosen on
            held_out_labels=held_out.get("labels", np.empty(0)),
            threshold=np.nan if chosen.get("value") is None else chosen["value"],
        )
    return {
        "probs": probs,
        "labels": test.labels,
        "n_train": len(train),
        "n_test": len(test),
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": wall,
        "accuracy_correct": int((probs.argmax(1) == test.labels).sum()),
        "chosen": {k: chosen.get(k) for k in ("value", "precision", "coverage", "n_images", "source", "reason")},
        "at_chosen": routed_counts(probs, test.labels, chosen.get("value")),
        "at_default": routed_counts(probs, test.labels, DEFAULT_CONFIDENCE_THRESHOLD),
    }


def proportion(successes: int, trials: int) -> str:
    if trials == 0:
        return "n/a"
    low, high = wilson_interval(successes, trials)
    return f"{successes / trials:.3f} [{low:.3f}, {high:.3f}] ({successes}/{trials})"


def describe_counts(c: dict) -> str:
    if c["threshold"] is None:
        return "no threshold chosen (fallback)"
    return (
        f"t={c['threshold']}: routed precision {proportion(c['routed_correct'], c['routed'])}, "
        f"coverage {proportion(c['routed'], c['n'])}"
    )


def describe(name: str, r: dict) -> str:
    source = r["chosen"]["source"]
    return (
        f"{name}: accuracy {proportion(r['accuracy_correct'], r['n_test'])}, train {r['train_seconds']:.0f} s on "
        f"{r['n_train']} images\n  chosen ({source}, {r['chosen']['n_images']} images): "
        f"{describe_counts(r['at_chosen'])}\n  default: {describe_counts(r['at_default'])}"
    )


def pooled(results: list[dict], which: str) -> dict:
    counts = {k: sum(r[which][k] for r in results) for k in ("routed", "routed_correct", "n")}
    precision = wilson_interval(counts["routed_correct"], counts["routed"])
    coverage = wilson_interval(counts["routed"], counts["n"])
    return {
        **counts,
        "precision": counts["routed_correct"] / counts["routed"] if counts["routed"] else None,
        "precision_wilson95": precision,
        "coverage": counts["routed"] / counts["n"],
        "coverage_wilson95": coverage,
    }


def nested(folds: list[tuple[np.ndarray, np.ndarray]], target: float) -> list[dict]:
    """Each fold judged with the threshold chosen on the other folds' held-out scores: how a threshold chosen by
    cross-fitting does on images it was not chosen on."""
    results = []
    for k, (probs, labels) in enumerate(folds):
        others = [f for j, f in enumerate(folds) if j != k]
        chosen = choose_threshold(
            np.concatenate([p for p, _ in others]), np.concatenate([y for _, y in others]), target, "cross-fitted"
        )
        results.append(routed_counts(probs, labels, chosen["value"]))
    return results


def write_recipe_calibration(path: Path, hp: Hyperparameters, folds, nested_pooled: dict, args) -> dict:
    """The recipe's threshold (chosen on every fold's held-out scores) and drift baseline (local_model/recipe.py)."""
    probs = np.concatenate([p for p, _ in folds])
    labels = np.concatenate([y for _, y in folds])
    chosen = choose_threshold(probs, labels, hp.routed_precision_target, "cross-fitted")
    if chosen["value"] is None:
        raise SystemExit(f"no recipe threshold: {chosen['reason']}")
    source = f"out-of-fold predictions of the recipe ({len(labels)} images, {len(folds)} folds)"
    calibration = {
        "hyperparameters": {k: v for k, v in asdict(hp).items() if k not in FREE_HYPERPARAMETERS},
        "threshold": {
            **chosen,
            "folds": len(folds),
            "fold_seed": FOLD_SEED,
            "data": f"{args.data_dir.parent.name}/{args.data_dir.name} ({len(labels)} images)",
            "nested_estimate": nested_pooled,
            "measured_by": "benchmarks/threshold_choice.py --write-recipe-calibration",
        },
        "baseline": build_baseline(probs, list(CLASSES), source).to_dict(),
    }
    path.write_text(json.dumps(calibration, indent=1, sort_keys=True) + "\n")
    return calibration


def rescore(folder: Path, held_out: list[np.ndarray], data, shift_px: int) -> list[dict]:
    """Each fold's saved model (fold-K-model/) scoring its held-out images again with `shift_px` test-time shifts."""
    folds = []
    for k, held in enumerate(held_out):
        model_dir = folder / f"fold-{k + 1}-model"
        if not model_dir.is_dir():
            raise SystemExit(f"no {model_dir.name} in {folder}: --tta-shift-px needs the saved models")
        classifier = load_model_dir(model_dir)
        classifier.meta.tta_shift_px = shift_px
        logits = classifier.logits(data.images[held]).numpy()
        folds.append({"logits": logits, "labels": data.labels[held], "views": classifier.view_count()})
    return folds


def load_scores(
    folders: list[Path], networks: int = 0, rescored: list[list[dict]] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each saved fold's (probabilities, labels). Several folders (runs of the same folds with other seeds) make
    one larger ensemble: their saved logits (networks x views, images, classes) are put together. With `networks`,
    the first that many networks only; with `rescored`, those scores (`rescore`) instead of the saved ones. Prints
    how many wrong answers every network of the ensemble gets wrong (no ensemble can route those right)."""
    runs = rescored or []
    for folder in folders if rescored is None else []:
        files = sorted(folder.glob("fold-*.npz"), key=lambda f: int(f.stem.split("-")[1]))
        if not files:
            raise SystemExit(f"no fold-K.npz in {folder}")
        runs.append([np.load(f) for f in files])
    if len({len(run) for run in runs}) > 1:
        raise SystemExit(f"the folders hold different numbers of folds: {[len(run) for run in runs]}")
    folds, wrong, every_network_wrong = [], 0, 0
    for saved in zip(*runs, strict=True):
        labels = saved[0]["labels"]
        if any(not np.array_equal(s["labels"], labels) for s in saved):
            raise SystemExit("the folders' folds hold different images: not runs of the same folds")
        views = {int(s["views"]) if "views" in s else 2 for s in saved}  # flip TTA, the default
        if len(views) > 1:
            raise SystemExit(f"the folders' models used different test-time views: {sorted(views)}")
        n_views = views.pop()
        logits = torch.as_tensor(np.concatenate([s["logits"] for s in saved])[: networks * n_views or None])
        as_saved = len(saved) == 1 and not networks and rescored is None  # at the model's own temperature
        probs = saved[0]["probs"] if as_saved else probabilities(logits).numpy()
        folds.append((probs, labels))
        per_network = torch.softmax(logits, -1).view(-1, n_views, *logits.shape[1:]).mean(1).argmax(-1).numpy()
        wrong += int((probs.argmax(1) != labels).sum())
        every_network_wrong += int((per_network != labels).all(0).sum())
    print(f"wrong answers: {wrong}; wrong in every one of the ensemble's networks: {every_network_wrong}")
    return folds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fold_arguments(parser)
    parser.add_argument("--save-scores", type=Path, metavar="DIR", help="write each fold's held-out scores here")
    parser.add_argument(
        "--from-scores",
        type=Path,
        action="append",
        metavar="DIR",
        help="no training: read --save-scores' files; given again, runs with other seeds join into one ensemble",
    )
    parser.add_argument("--networks", type=int, default=0, help="with --from-scores: use the first N networks only")
    parser.add_argument(
        "--tta-shift-px",
        type=int,
        metavar="N",
        help="with --from-scores: score the held-out images again with the saved models and N px test-time shifts",
    )
    parser.add_argument(
        "--write-recipe-calibration",
        type=Path,
        metavar="FILE",
        help=f"write the recipe's cross-fitted threshold and baseline (training reads {RECIPE_CALIBRATION_FILE.name})",
    )
    args = parser.parse_args()
    hp, data = prepare(args)
    target = hp.routed_precision_target
    if args.from_scores:
        rescored = None
        if args.tta_shift_px is not None:
            held_out = [held for _, _, held in fold_indices(data, args)]
            rescored = [rescore(folder, held_out, data, args.tta_shift_px) for folder in args.from_scores]
        folds = load_scores(args.from_scores, args.networks, rescored)
        summary = {"hyperparameters": vars(hp), "folds": len(folds), "from_scores": [str(f) for f in args.from_scores]}
    else:
        fold_no = [0]
        results = run_folds(
            data,
            args,
            lambda train, held: run_fold(data, train, held, hp, args.save_scores, fold_no),
            lambda n, r: print(describe(n, r), flush=True),
        )
        folds = [(r.pop("probs"), r.pop("labels")) for r in results]
        summary = summarize(results, hp)
    nested_pooled = pooled([{"nested": c} for c in nested(folds, target)], "nested")
    summary["pooled_nested"] = nested_pooled
    n = sum(len(y) for _, y in folds)
    correct = sum(int((p.argmax(1) == y).sum()) for p, y in folds)
    print(
        f"CROSS-FITTED threshold (each fold judged with the threshold chosen on the other {len(folds) - 1} folds' "
        f"held-out scores), pooled over {n} images:\n  accuracy {proportion(correct, n)}; routed precision "
        f"{proportion(nested_pooled['routed_correct'], nested_pooled['routed'])}, coverage "
        f"{proportion(nested_pooled['routed'], n)}"
    )
    everything = (np.concatenate([p for p, _ in folds]), np.concatenate([y for _, y in folds]))
    oracle = choose_threshold(*everything, target, "oracle")
    if oracle["value"] is not None:
        summary["oracle"] = {k: oracle[k] for k in ("value", "precision", "coverage")}
        print(
            f"  the best any one threshold does on these scores (chosen with their labels, an upper bound): "
            f"coverage {oracle['coverage']:.3f} at routed precision {oracle['precision']:.4f} (t={oracle['value']})"
        )
    if args.write_recipe_calibration:
        written = write_recipe_calibration(args.write_recipe_calibration, hp, folds, nested_pooled, args)
        t = written["threshold"]
        print(
            f"recipe calibration: threshold {t['value']} (routed precision {t['precision']:.4f} at coverage "
            f"{t['coverage']:.3f} on {t['n_images']} out-of-fold images) -> {args.write_recipe_calibration}"
        )
    append_json(args.json_out, summary)
    return 0


def summarize(results: list[dict], hp: Hyperparameters) -> dict:
    n_test = sum(r["n_test"] for r in results)
    correct = sum(r["accuracy_correct"] for r in results)
    summary = {
        "hyperparameters": vars(hp),
        "folds": len(results),
        "accuracy": correct / n_test,
        "accuracy_wilson95": wilson_interval(correct, n_test),
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in results])),
        "fallbacks": sum(r["at_chosen"]["threshold"] is None for r in results),
        "pooled_at_chosen": pooled(results, "at_chosen"),
        "pooled_at_default": pooled(results, "at_default"),
        "runs": results,
    }
    at_chosen, at_default = summary["pooled_at_chosen"], summary["pooled_at_default"]
    print(
        f"POOLED over {len(results)} fold(s) ({n_test} held-out images), target routed precision "
        f"{hp.routed_precision_target}, 95% Wilson intervals:\n"
        f"  accuracy {proportion(correct, n_test)}; train {summary['train_seconds_mean']:.0f} s per fold (mean)\n"
        f"  thresholds each model chose ({summary['fallbacks']} fold(s) fell back): routed precision "
        f"{proportion(at_chosen['routed_correct'], at_chosen['routed'])}, "
        f"coverage {proportion(at_chosen['routed'], n_test)}\n"
        f"  default {DEFAULT_CONFIDENCE_THRESHOLD}: routed precision "
        f"{proportion(at_default['routed_correct'], at_default['routed'])}, "
        f"coverage {proportion(at_default['routed'], n_test)}"
    )
    return summary


if __name__ == "__main__":
    sys.exit(main())
