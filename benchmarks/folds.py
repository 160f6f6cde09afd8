"""What the cross-validation benchmarks (train_accuracy.py, threshold_choice.py) share: their command-line
arguments, the stratified folds of --data-dir (seed 1234, so every benchmark holds out the same images), and
the JSON line they append."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from local_model.data import ImageSet, load_image_folder, stratified_folds
from local_model.train import Hyperparameters
from scones.pipeline.steps import parse_overrides

FOLD_SEED = 1234


def add_fold_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with bicycle/ and motorcycle/")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, default=0, help="run only the first N folds (0 = all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--json-out", type=Path, help="append the results as one JSON line here")


def prepare(args: argparse.Namespace) -> tuple[Hyperparameters, ImageSet]:
    """Threads, hyperparameters (defaults with --set applied) and the images of --data-dir."""
    if args.threads:
        torch.set_num_threads(args.threads)
    hp = Hyperparameters.from_dict(parse_overrides(args.set))
    print(f"hyperparameters: {hp}", flush=True)
    return hp, load_image_folder(args.data_dir)


def folds(data: ImageSet, args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, training indices, held-out indices) of each fold to run."""
    for k, held in enumerate(stratified_folds(data.labels, args.folds, seed=FOLD_SEED)[: args.only_folds or None]):
        yield f"fold {k + 1}/{args.folds}", np.setdiff1d(np.arange(len(data)), held), held


def run_folds(
    data: ImageSet, args: argparse.Namespace, run: Callable[[np.ndarray, np.ndarray], dict], show: Callable
) -> list[dict]:
    """`run(train_idx, held_idx)` on each fold, each result shown with `show(name, result)` as it comes."""
    results = []
    for name, train_idx, held in folds(data, args):
        results.append(run(train_idx, held))
        show(name, results[-1])
    return results


def append_json(path: Path | None, summary: dict) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(summary) + "\n")
