"""Benchmark: training throughput of the recipe under different Python environments (torch builds).

Each build is an interpreter plus the code to run: this checkout's local_model/, or with @REV the
local_model/ of git revision REV (exported to a temporary folder), e.g. the torchvision-AutoAugment
code of 4776853 under torch 2.14.1. Every build trains on the same images (the training part of the
first of 5 stratified folds, as benchmarks/train_accuracy.py uses), with autoaugment on and off, the
builds interleaved (A B A B ...) so that load from other jobs falls on all of them alike.

    python benchmarks/torch_builds.py --data-dir ../shared/data/cifar100-bikes/train \\
        --build cpu-2.13.0=.venv/bin/python --build cuda-2.14.1=/tmp/v-cuda/bin/python@4776853
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE_EPOCHS = 200  # the recipe's default, to which the measured seconds are scaled


def measure(data_dir: Path, epochs: int, autoaugment: bool) -> dict:
    """Worker: one training of train_network on the images of the first fold's training part."""
    import numpy as np
    import torch

    import local_model
    from local_model.data import load_image_folder, stratified_folds
    from local_model.train import Hyperparameters, train_network

    data = load_image_folder(data_dir)
    train_set = data.subset(np.setdiff1d(np.arange(len(data)), stratified_folds(data.labels, 5, seed=1234)[0]))
    hp = Hyperparameters.from_dict({"epochs": str(epochs), "autoaugment": str(autoaugment)})
    start = time.perf_counter()
    train_network(train_set, replace(hp, epochs=1), seed=0)  # first-use costs (kernel selection, page-in)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    train_network(train_set, hp, seed=0)
    seconds = time.perf_counter() - start
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "code": str(Path(local_model.__file__).parent),
        "n_images": len(train_set),
        "epochs": epochs,
        "autoaugment": autoaugment,
        "warmup_seconds": warmup_seconds,
        "seconds": seconds,
        "images_per_s": epochs * len(train_set) / seconds,
    }


def export_revision(rev: str, into: Path) -> Path:
    """local_model/ of git revision `rev`, extracted under `into`, without touching the work tree."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "local_model"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run_worker(python: str, code_root: Path, args: argparse.Namespace, autoaugment: bool) -> dict:
    command = [python, str(Path(__file__).resolve()), "--worker", "--data-dir", str(args.data_dir)]
    command += ["--epochs", str(args.epochs), "--autoaugment", str(autoaugment)]
    env = {**os.environ, "PYTHONPATH": str(code_root)}  # this code, not whatever the venv has installed
    load_before = os.getloadavg()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(loadavg_before=load_before, loadavg_after=os.getloadavg())
    return result


def describe(r: dict) -> str:
    return (
        f"round {r['round']} {r['build']:>12} (torch {r['torch']}, {r['threads']} threads) "
        f"autoaugment={str(r['autoaugment']).lower():5}: {r['seconds']:6.1f} s for {r['epochs']} epochs of "
        f"{r['n_images']} images = {r['images_per_s']:5.0f} img/s (1-epoch warm-up {r['warmup_seconds']:.1f} s) "
        f"| load {r['loadavg_before'][0]:.2f} -> {r['loadavg_after'][0]:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with bicycle/ and motorcycle/")
    parser.add_argument("--build", action="append", default=[], metavar="NAME=PYTHON[@REV]", help="repeatable")
    parser.add_argument("--epochs", type=int, default=50, help="per training; seconds are also scaled to 200")
    parser.add_argument("--rounds", type=int, default=2, help="trainings per build and autoaugment setting")
    parser.add_argument("--json-out", type=Path, help="append the results as one JSON line here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--autoaugment", default="true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.data_dir, args.epochs, args.autoaugment.lower() == "true")))
        return 0
    if not args.build:
        parser.error("give at least one --build NAME=PYTHON[@REV]")
    with tempfile.TemporaryDirectory() as tmp:
        builds = {}
        for spec in args.build:
            name, _, target = spec.partition("=")
            python, _, rev = target.partition("@")
            if rev:
                Path(tmp, name).mkdir()
            builds[name] = (python, export_revision(rev, Path(tmp, name)) if rev else REPO)
        runs = []
        for round_ in range(args.rounds):
            for autoaugment in (True, False):
                for name, (python, code_root) in builds.items():
                    r = run_worker(python, code_root, args, autoaugment) | {"build": name, "round": round_ + 1}
                    runs.append(r)
                    print(describe(r), flush=True)
    # Here, not at the top: the workers run this file in other venvs, which may lack what scones imports.
    from scones.monitoring.report import percentile

    print(f"SUMMARY (median, nearest rank, of {args.rounds}; seconds scaled to one {RECIPE_EPOCHS}-epoch training)")
    summary = []
    for name in builds:
        for autoaugment in (True, False):
            mine = [r for r in runs if r["build"] == name and r["autoaugment"] == autoaugment]
            ips = percentile((r["images_per_s"] for r in mine), 50)
            row = {"build": name, "torch": mine[0]["torch"], "autoaugment": autoaugment, "images_per_s": ips}
            row["recipe_seconds"] = RECIPE_EPOCHS * mine[0]["n_images"] / ips
            row["warmup_seconds"] = percentile((r["warmup_seconds"] for r in mine), 50)
            summary.append(row)
            print(
                f"  {name:>12} autoaugment={str(autoaugment).lower():5}: {ips:5.0f} img/s, "
                f"{row['recipe_seconds']:5.0f} s per {RECIPE_EPOCHS}-epoch training of {mine[0]['n_images']} images "
                f"(+ {row['warmup_seconds']:.1f} s first-epoch warm-up in a fresh process)"
            )
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(json.dumps({"summary": summary, "runs": runs}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
