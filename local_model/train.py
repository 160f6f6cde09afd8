"""Training: the SageMaker training-container entrypoint and the training loop it runs.

SageMaker runs `train` in the container with /opt/ml/input/config/hyperparameters.json, the
channels under /opt/ml/input/data/<channel>, and expects the model in /opt/ml/model (it packs
that into model.tar.gz) or a reason in /opt/ml/output/failure and a non-zero exit. The same
entrypoint runs in-process here: the /opt/ml root is overridable (SCONES_OPT_ML or --opt-ml).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from local_model.augment import AutoAugment
from local_model.baseline import BASELINE_FILE, Baseline, build_baseline, save_baseline
from local_model.classifier import Classifier, ModelMeta, build_network, probabilities, save_model_dir
from local_model.data import ImageSet, holdout_split, load_image_folder, stratified_folds
from local_model.progress import progress_bar
from local_model.recipe import RECIPE_CALIBRATION_FILE, recipe_calibration
from local_model.threshold import choose_threshold, fit_temperature, negative_log_likelihood, no_validation_threshold


@dataclass
class Hyperparameters:
    # Chosen on 5 stratified folds of the 1000 real training images (benchmarks/threshold_choice.py and
    # train_accuracy.py; docs/measured.md has every candidate tried and what it gave).
    epochs: int = 200  # passes over the training set, per network; ~0.6 s each on 1000 images (150: -1.8 pt)
    batch_size: int = 100  # images per SGD step
    lr: float = 0.2  # peak learning rate of the one-cycle schedule (SGD, Nesterov)
    warmup_fraction: float = 0.2  # share of steps spent rising to the peak
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2, applied to weights and BN parameters alike
    label_smoothing: float = 0.0  # 0.1 was as accurate but capped confidence near 0.95: 64% vs 85% routed at 0.93
    width: int = 16  # channels of the stem; the net widens to 8x this
    # Networks averaged at inference, each trained on every training image from its own seed. Two: their
    # disagreement is what separates the wrong answers from the right ones (docs/measured.md).
    ensemble_size: int = 2
    # Cross-fitting within one training run: the training set is cut into this many stratified folds and network k
    # is trained without fold k (k < ensemble_size); each left-out image is scored by the network that never saw
    # it, and those scores choose the threshold. It costs each network a fold of its images (with 2 of 5 folds, on
    # the one fold measured, the pair's accuracy fell from 0.970 to 0.960), so the default recipe is cross-fitted
    # once, offline, instead (local_model/recipe.py). 1 = off.
    cross_fit_folds: int = 1
    # Networks trained at once, each in a process of its own with an equal share of torch's threads (0 = as many
    # as torch has threads, 1 = one after another in this process).
    parallel_networks: int = 0
    autoaugment: bool = True  # AutoAugment's CIFAR-10 policy per image (local_model/augment.py)
    cutout_px: int = 8  # side of the square zeroed at a random place (0 = off)
    crop_pad_px: int = 4  # reflect padding before the random 32x32 crop
    # CutMix (Yun et al. 2019): the share of batches in which each image gets a box of another image's pixels
    # (area ~ U(0, 1)) and the loss weighs both labels by their areas; 0 = off. Half the batches: on 5 folds the
    # pair ranks its wrong answers lower (coverage at routed precision 0.99: 0.856 -> 0.894 and 0.904 in two
    # draws) for 0.4 points of accuracy; every batch cost 1.2 points and routed less (0.805). docs/measured.md.
    cutmix: float = 0.5
    # Held out (when there is no validation channel) to choose the threshold and the drift baseline on; 0 = none,
    # and then the recipe's cross-fitted ones apply when these are the recipe's hyperparameters (local_model/recipe.py)
    # or the workflow's default threshold.
    val_fraction: float = 0.0
    tta_shift_px: int = 0  # test-time shifted views as well as the flip (ModelMeta.tta_shift_px); 0 = flip only
    bf16: bool = True  # bfloat16 autocast on CPU (AVX-512 BF16 makes it ~2x faster)
    # The routing threshold is the lowest top-class probability at which the routed held-out images reach this
    # precision (local_model/threshold.py); too few held-out images or none reaching it: the default.
    routed_precision_target: float = 0.99  # share of routed images sent to their true class, 0..1
    # Temperature scaling fitted on the held-out scores. Off: on 5 folds it left coverage at the target unchanged
    # (0.692 vs 0.691; it barely reorders scores) while T, fitted on 80 images, ranged 0.33..1.67
    # (benchmarks/threshold_choice.py at the time). On, served scores are calibrated; model.json records T.
    calibrate: bool = False
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: dict) -> Hyperparameters:
        """Parse SageMaker-style hyperparameters (all values arrive as strings)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise HyperparameterError(f"unknown hyperparameters {unknown}; known: {sorted(known)}")
        values = {}
        for name, value in raw.items():
            kind = type(getattr(cls(), name))
            try:
                if kind is bool and isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(value)
                    values[name] = value.lower() in ("true", "1")
                else:
                    values[name] = kind(value)
            except (TypeError, ValueError) as e:
                raise HyperparameterError(f"hyperparameter {name}={value!r} is not a {kind.__name__}") from e
        hp = cls(**values)
        if not 0.0 < hp.routed_precision_target <= 1.0:
            raise HyperparameterError(f"routed_precision_target={hp.routed_precision_target} is not in (0, 1]")
        if hp.cross_fit_folds < 1:
            raise HyperparameterError(f"cross_fit_folds={hp.cross_fit_folds} is not >= 1")
        if not 0.0 <= hp.cutmix <= 1.0:
            raise HyperparameterError(f"cutmix={hp.cutmix} is not in 0..1")
        if not 0 <= hp.tta_shift_px <= 8:
            raise HyperparameterError(f"tta_shift_px={hp.tta_shift_px} is not in 0..8")
        if hp.parallel_networks < 0:
            raise HyperparameterError(f"parallel_networks={hp.parallel_networks} is not >= 0")
        if hp.ensemble_size < 1:
            raise HyperparameterError(f"ensemble_size={hp.ensemble_size} is not >= 1")
        if hp.cross_fit_folds > 1 and hp.ensemble_size > hp.cross_fit_folds:
            raise HyperparameterError(
                f"ensemble_size={hp.ensemble_size} > cross_fit_folds={hp.cross_fit_folds}: one network per fold at most"
            )
        return hp


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has the wrong type."""


def augment(images: torch.Tensor, hp: Hyperparameters, auto: AutoAugment | None) -> torch.Tensor:
    """Random crop, horizontal flip, AutoAugment and cutout of an NCHW uint8 batch."""
    n, _, h, w = images.shape
    p = hp.crop_pad_px
    padded = F.pad(images, (p, p, p, p), mode="reflect") if p else images
    offsets = torch.randint(0, 2 * p + 1, (n, 2))
    flips = torch.rand(n) < 0.5
    # Every image's crop (and flip) at once, as one gather from the padded batch.
    rows = offsets[:, 0, None] + torch.arange(h)  # (n, h)
    cols = offsets[:, 1, None] + torch.where(flips[:, None], torch.arange(w - 1, -1, -1), torch.arange(w))
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, h, w, C)
    if auto is not None:
        hwc = out.numpy()
        for i in range(n):
            augmented = auto.augment_hwc(hwc[i])
            if augmented is not None:
                hwc[i] = augmented
    out = out.permute(0, 3, 1, 2).contiguous()
    if hp.cutout_px:
        c = hp.cutout_px
        cy, cx = torch.randint(0, h, (n, 1)), torch.randint(0, w, (n, 1))
        ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
        in_y = (ys >= cy - c // 2) & (ys < cy + c - c // 2)
        in_x = (xs >= cx - c // 2) & (xs < cx + c - c // 2)
        out = out.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0)
    return out


def cutmix(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste one random box of each image's partner (a permutation of the batch) into it; returns the mixed
    batch, the partners' indices and the share of pixels each image keeps (its label's weight in the loss)."""
    n, _, h, w = x.shape
    partner = torch.randperm(n)
    area = float(torch.rand(()))  # the box's share of the image, before clipping at the edges
    bh, bw = int(h * math.sqrt(area)), int(w * math.sqrt(area))
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh - bh // 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw - bw // 2, w)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[partner, :, y0:y1, x0:x1]
    return mixed, partner, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def model_meta(hp: Hyperparameters) -> ModelMeta:
    """What model.json says of a model trained with `hp` (before training adds its threshold and metrics)."""
    return ModelMeta(width=hp.width, tta_shift_px=hp.tta_shift_px, hyperparameters=asdict(hp))


def train_network(
    train_set: ImageSet, hp: Hyperparameters, seed: int, desc: str = "train", position: int = 0
) -> torch.nn.Module:
    """Train one network from scratch; deterministic for a given seed and thread count."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    meta = ModelMeta(width=hp.width)
    net = build_network(meta).to(memory_format=torch.channels_last)
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(meta.std).view(1, 3, 1, 1) * 255.0
    images = torch.from_numpy(train_set.images).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(train_set.labels)
    steps_per_epoch = math.ceil(len(labels) / hp.batch_size)
    total_steps = hp.epochs * steps_per_epoch
    optimizer = torch.optim.SGD(
        net.parameters(), lr=hp.lr, momentum=hp.momentum, nesterov=True, weight_decay=hp.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=hp.lr, total_steps=total_steps, pct_start=hp.warmup_fraction, anneal_strategy="linear"
    )
    auto = AutoAugment() if hp.autoaugment else None
    net.train()
    with progress_bar(range(hp.epochs), desc=desc, unit="epoch", position=position) as bar:
        for _ in bar:
            batch_images = augment(images, hp, auto)
            order = torch.randperm(len(labels))
            loss_sum, correct = 0.0, 0
            for start in range(0, len(order), hp.batch_size):
                idx = order[start : start + hp.batch_size]
                x = ((batch_images[idx].float() - mean) / std).contiguous(memory_format=torch.channels_last)
                y = labels[idx]
                mixed = hp.cutmix > 0 and float(torch.rand(())) < hp.cutmix
                if mixed:
                    x, partner, kept = cutmix(x)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=hp.bf16):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=hp.label_smoothing)
                if mixed:
                    partner_loss = F.cross_entropy(logits.float(), y[partner], label_smoothing=hp.label_smoothing)
                    loss = kept * loss + (1 - kept) * partner_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item() * len(idx)
                correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{loss_sum / len(labels):.3f}", train_acc=f"{correct / len(labels):.3f}")
    return net.eval()


def evaluate(classifier: Classifier, images: ImageSet, threshold: float | None = None) -> dict:
    """Accuracy, confusion matrix (rows = true class, columns = predicted) and throughput; with a
    confidence `threshold`, also the share of images confident enough to route and their accuracy."""
    start = time.perf_counter()
    probs = classifier.predict_proba(images.images)
    seconds = time.perf_counter() - start
    return {**score_probabilities(probs, images.labels, threshold), "inference_images_per_s": len(images) / seconds}


def score_probabilities(probs: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> dict:
    """`evaluate`'s numbers from class probabilities already computed (e.g. out-of-fold ones)."""
    predicted = probs.argmax(1)
    confusion = np.zeros((probs.shape[1], probs.shape[1]), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    result = {
        "accuracy": float((predicted == labels).mean()),
        "confusion_matrix": confusion.tolist(),
        "n_images": len(labels),
    }
    if threshold is not None:
        confident = probs.max(1) >= threshold
        result["threshold"] = threshold
        result["routed_fraction"] = float(confident.mean())
        result["routed_accuracy"] = float((predicted == labels)[confident].mean()) if confident.any() else None
        result["routed"] = int(confident.sum())
        result["routed_correct"] = int((predicted == labels)[confident].sum())
    return result


def calibrate_and_choose_threshold(
    meta: ModelMeta, logits: torch.Tensor, labels: np.ndarray, hp: Hyperparameters, source: str
) -> np.ndarray:
    """Fit the temperature (when `hp.calibrate`) and choose the routing threshold on held-out `logits` (views, N,
    classes) of images with `labels`; both are written into `meta` (so model.json holds them and served scores
    are the calibrated ones). Returns the probabilities at that temperature."""
    temperature = fit_temperature(logits, labels) if hp.calibrate else 1.0
    meta.temperature = temperature
    probs = probabilities(logits, temperature).numpy()
    chosen = choose_threshold(probs, labels, hp.routed_precision_target, source)
    chosen["temperature"] = temperature
    chosen["nll_uncalibrated"] = negative_log_likelihood(logits, labels, 1.0)
    chosen["nll_calibrated"] = negative_log_likelihood(logits, labels, temperature)
    meta.confidence_threshold = chosen
    return probs


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


@dataclass
class NetworkJob:
    """One network to train: on `images`, seeded `seed`; with `held_out`, also its logits of those images."""

    images: ImageSet
    seed: int
    desc: str
    held_out: np.ndarray | None = None


def _exit_with_parent(parent_pid: int) -> None:
    """A worker's initializer: on Linux, have the kernel stop the worker when its parent dies (a training
    stopped with SIGTERM or SIGKILL would otherwise leave its networks training on), and stop now if it already
    has (it died while this worker was starting)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the pool's own checks end workers after their current network
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _train_job(job: NetworkJob, hp: Hyperparameters, threads: int | None, position: int):
    """Train one network (in this process or a worker's): its state_dict and, with `job.held_out`, its logits."""
    if threads:
        torch.set_num_threads(threads)
    net = train_network(job.images, hp, seed=job.seed, desc=job.desc, position=position)
    held = None
    if job.held_out is not None:
        held = Classifier([net], model_meta(hp)).logits(job.held_out)
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}, held


def train_networks(jobs: list[NetworkJob], hp: Hyperparameters) -> list[tuple[torch.nn.Module, torch.Tensor | None]]:
    """Train every job's network, `hp.parallel_networks` at a time in worker processes (spawned: a forked torch
    can deadlock), each with an equal share of this process's torch threads; results in the jobs' order."""
    workers = min(len(jobs), hp.parallel_networks or torch.get_num_threads())
    if workers <= 1:
        results = [_train_job(job, hp, None, 0) for job in jobs]
    else:
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_exit_with_parent, initargs=(os.getpid(),)
        )
        with pool:
            futures = [pool.submit(_train_job, job, hp, threads, k % workers) for k, job in enumerate(jobs)]
            results = [f.result() for f in futures]
    trained = []
    for state_dict, held in results:
        net = build_network(ModelMeta(width=hp.width))
        net.load_state_dict(state_dict)
        trained.append((net.eval(), held))
    return trained


def train_cross_fitted(
    train_set: ImageSet, hp: Hyperparameters
) -> tuple[list[torch.nn.Module], np.ndarray, torch.Tensor]:
    """Network k trained without stratified fold k, for the first `hp.ensemble_size` folds; returns the networks,
    the indices of the left-out images and their out-of-fold logits (views, n, classes): each image scored only
    by the network that never saw it."""
    folds = stratified_folds(train_set.labels, hp.cross_fit_folds, seed=hp.seed)[: hp.ensemble_size]
    jobs = [
        NetworkJob(
            train_set.subset(np.setdiff1d(np.arange(len(train_set)), held)),
            seed=hp.seed + k,
            desc=f"net {k + 1}/{len(folds)}",
            held_out=train_set.images[held],
        )
        for k, held in enumerate(folds)
    ]
    trained = train_networks(jobs, hp)
    order = np.concatenate(folds)
    return [net for net, _ in trained], order, torch.cat([held_logits for _, held_logits in trained], dim=1)


def train_model(
    train_set: ImageSet,
    model_dir: Path,
    hp: Hyperparameters,
    validation: ImageSet | None = None,
    held_out_scores: dict | None = None,
) -> dict:
    """Train the networks, choose the threshold on held-out scores, save the model.

    The held-out scores are, with cross-fitting (`hp.cross_fit_folds` > 1), the out-of-fold scores of every
    training image; otherwise the scores of `validation` (or of a `val_fraction` split of `train_set`). A given
    `validation` set is evaluated either way. A `held_out_scores` dict gets those scores' logits and labels."""
    cross_fit = hp.cross_fit_folds > 1
    if not cross_fit and validation is None and hp.val_fraction > 0:
        train_idx, val_idx = holdout_split(train_set.labels, hp.val_fraction, hp.seed)
        train_set, validation = train_set.subset(train_idx), train_set.subset(val_idx)
    start = time.perf_counter()
    if cross_fit:
        networks, held_idx, held_logits = train_cross_fitted(train_set, hp)
        held_out = train_set.subset(held_idx)
        source = f"out-of-fold predictions ({len(held_out)} images, {len(networks)} of {hp.cross_fit_folds} folds)"
    else:
        jobs = [NetworkJob(train_set, hp.seed + k, f"net {k + 1}/{hp.ensemble_size}") for k in range(hp.ensemble_size)]
        networks = [net for net, _ in train_networks(jobs, hp)]
        held_out, source = validation, f"validation split ({len(validation) if validation else 0} images)"
    train_seconds = time.perf_counter() - start
    meta = model_meta(hp)
    classifier = Classifier(networks, meta)
    n_member_images = sum(len(train_set) - (len(held_out) // len(networks) if cross_fit else 0) for _ in networks)
    metrics = {
        "train_seconds": train_seconds,
        "train_images_per_s": hp.epochs * n_member_images / train_seconds,
        "n_train_images": len(train_set),
    }
    held_probs = None
    if held_out is not None:
        if not cross_fit:
            held_logits = classifier.logits(held_out.images)
        key = "out_of_fold" if cross_fit else "validation"
        held_probs = calibrate_and_choose_threshold(meta, held_logits, held_out.labels, hp, key.replace("_", "-"))
        if held_out_scores is not None:
            held_out_scores.update(logits=held_logits.numpy(), labels=held_out.labels)
        metrics[key] = score_probabilities(held_probs, held_out.labels, meta.confidence_threshold["value"])
        metrics[key]["confidence_threshold"] = meta.confidence_threshold
    else:
        recipe, why_not = recipe_calibration(asdict(hp))
        if recipe is None:
            meta.confidence_threshold = no_validation_threshold(hp.routed_precision_target, why_not)
        else:
            meta.confidence_threshold = {**recipe["threshold"], "source": "cross-fitted recipe"}
    if cross_fit and validation is not None:
        metrics["validation"] = evaluate(classifier, validation, meta.confidence_threshold["value"])
    meta.metrics = metrics
    save_model_dir(model_dir, networks, meta)
    # The scores drift monitoring compares served traffic against (local_model/baseline.py); without held-out
    # scores there is none, and a stale one from an earlier run in this folder must not remain.
    (Path(model_dir) / BASELINE_FILE).unlink(missing_ok=True)
    if held_probs is not None:
        save_baseline(model_dir, build_baseline(held_probs, meta.classes, source))
    elif meta.confidence_threshold["source"] == "cross-fitted recipe":
        save_baseline(model_dir, Baseline.from_dict(recipe["baseline"], RECIPE_CALIBRATION_FILE.name))
    return metrics


def train_from_folder(data_dir: Path, model_dir: Path, hyperparameters: dict | None = None) -> dict:
    """Convenience for callers (CLI, tests): train on `<data_dir>` holding bicycle/ and motorcycle/."""
    hp = Hyperparameters.from_dict(hyperparameters or {})
    return train_model(load_image_folder(data_dir), model_dir, hp)


# --- SageMaker training contract ------------------------------------------------------------


@dataclass
class TrainingPaths:
    hyperparameters: Path
    train_channel: Path
    validation_channel: Path
    model_dir: Path
    failure_file: Path

    @classmethod
    def resolve(cls, opt_ml: Path | None = None, environ: Mapping[str, str] | None = None) -> TrainingPaths:
        """The contract's paths under /opt/ml (or SCONES_OPT_ML), with the SM_* overrides of `environ` (default:
        the process environment; the host's in-process training passes {} so that no SM_* of its own applies)."""
        env = os.environ if environ is None else environ
        root = Path(opt_ml or env.get("SCONES_OPT_ML", "/opt/ml"))
        return cls(
            hyperparameters=root / "input/config/hyperparameters.json",
            train_channel=Path(env.get("SM_CHANNEL_TRAIN", root / "input/data/train")),
            validation_channel=Path(env.get("SM_CHANNEL_VALIDATION", root / "input/data/validation")),
            model_dir=Path(env.get("SM_MODEL_DIR", root / "model")),
            failure_file=Path(env.get("SM_OUTPUT_FAILURE", root / "output/failure")),
        )


def run_training_job(paths: TrainingPaths) -> dict:
    raw = json.loads(paths.hyperparameters.read_text()) if paths.hyperparameters.is_file() else {}
    hp = Hyperparameters.from_dict(raw)
    validation = load_image_folder(paths.validation_channel) if paths.validation_channel.is_dir() else None
    metrics = train_model(load_image_folder(paths.train_channel), paths.model_dir, hp, validation)
    print(json.dumps({"metrics": metrics}), flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SageMaker training entrypoint (run as `train` in the container)")
    parser.add_argument("--opt-ml", type=Path, help="root of the SageMaker paths (default /opt/ml or SCONES_OPT_ML)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = TrainingPaths.resolve(args.opt_ml)
    try:
        run_training_job(paths)
    except Exception as e:
        # SageMaker shows the failure file's text as the job's FailureReason.
        paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        print(f"training failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
