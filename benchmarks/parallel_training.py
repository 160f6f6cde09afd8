"""Benchmark: the recipe's networks trained one after another (each with every torch thread) or at once (each in
a process of its own with a share of the threads: `parallel_networks`). Wall time to train `--networks` networks,
the two ways interleaved (A B A B) so that a machine's background load falls on both alike.

    python benchmarks/parallel_training.py --data-dir ../shared/data/cifar100-bikes/train --epochs 40 --rounds 2
    python benchmarks/parallel_training.py --data-dir ../shared/data/cifar100-bikes/train --images 1000 \
        --epochs 200 --rounds 1 --ways at-once    # the recipe's training time on all 1000 images (the budget)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from local_model.data import load_image_folder
from local_model.train import Hyperparameters, NetworkJob, train_networks
from scones.pipeline.steps import parse_overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with bicycle/ and motorcycle/")
    parser.add_argument("--images", type=int, default=800, help="train on the first N images (a CV fold's size)")
    parser.add_argument("--networks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=40, help="per network (the recipe: 200; time scales with it)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ways", choices=["both", "at-once", "one-after-another"], default="both")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
    args = parser.parse_args()
    data = load_image_folder(args.data_dir)
    images = data.subset(np.arange(min(args.images, len(data))))
    hp = Hyperparameters.from_dict({**parse_overrides(args.set), "epochs": args.epochs})
    jobs = [NetworkJob(images, seed, f"net {seed + 1}") for seed in range(args.networks)]
    print(f"{args.networks} networks x {args.epochs} epochs on {len(images)} images, {torch.get_num_threads()} threads")
    if args.set:
        print(f"  with {', '.join(args.set)}")
    seconds: dict[str, list[float]] = {"one after another": [], "at once": []}
    for _ in range(args.rounds):
        for name, parallel in (("one after another", 1), ("at once", 0)):
            if args.ways not in ("both", name.replace(" ", "-")):
                continue
            start = time.perf_counter()
            train_networks(jobs, replace(hp, parallel_networks=parallel))
            seconds[name].append(time.perf_counter() - start)
            print(f"  {name}: {seconds[name][-1]:.1f} s", flush=True)
    for name, runs in seconds.items():
        if not runs:
            continue
        rate = args.networks * args.epochs * len(images) / min(runs)
        print(f"{name}: best {min(runs):.1f} s of {len(runs)} ({rate:.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
