"""Training: the SageMaker training-container entrypoint and the training loop it runs.

SageMaker runs `train` in the container with /opt/ml/input/config/hyperparameters.json, the
channels under /opt/ml/input/data/<channel>, and expects the model in /opt/ml/model (it packs
that into model.tar.gz) or a reason in /opt/ml/output/failure and a non-zero exit. The same
entrypoint runs in-process here: the /opt/ml root is overridable (SCONES_OPT_ML or --opt-ml).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from local_model.augment import AutoAugment
from local_model.baseline import BASELINE_FILE, build_baseline, save_baseline
from local_model.classifier import Classifier, ModelMeta, build_network, probabilities, save_model_dir
from local_model.data import ImageSet, holdout_split, load_image_folder
from local_model.progress import progress_bar
from local_model.threshold import choose_threshold, fit_temperature, negative_log_likelihood, no_validation_threshold


@dataclass
class Hyperparameters:
    # Chosen on 5 stratified folds of the 1000 real training images (benchmarks/train_accuracy.py).
    epochs: int = 200  # passes over the training set; ~0.7 s each on 1000 images, 2 cores (150: -1.1 pt)
    batch_size: int = 100  # images per SGD step
    lr: float = 0.2  # peak learning rate of the one-cycle schedule (SGD, Nesterov)
    warmup_fraction: float = 0.2  # share of steps spent rising to the peak
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2, applied to weights and BN parameters alike
    label_smoothing: float = 0.0  # 0.1 was as accurate but capped confidence near 0.95: 64% vs 85% routed at 0.93
    width: int = 16  # channels of the stem; the net widens to 8x this
    ensemble_size: int = 1  # independently seeded networks averaged at inference
    autoaugment: bool = True  # AutoAugment's CIFAR-10 policy per image (local_model/augment.py, Pillow)
    cutout_px: int = 8  # side of the square zeroed at a random place (0 = off)
    crop_pad_px: int = 4  # reflect padding before the random 32x32 crop
    val_fraction: float = 0.1  # held out (no validation channel) for the metrics, temperature and threshold; 0 = none
    bf16: bool = True  # bfloat16 autocast on CPU (AVX-512 BF16 makes it ~2x faster)
    # The routing threshold is the lowest top-class probability at which the routed validation images reach
    # this precision (local_model/threshold.py); too few validation images or none reaching it: the default.
    routed_precision_target: float = 0.99  # share of routed images sent to their true class, 0..1
    # Temperature scaling fitted on the validation split. Off: on 5 folds it left coverage at the target unchanged
    # (0.692 vs 0.691; it barely reorders scores) while T, fitted on 80 images, ranged 0.33..1.67
    # (benchmarks/threshold_choice.py). On, served scores are calibrated probabilities; model.json records T.
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
        return hp


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has the wrong type."""


def augment(images: torch.Tensor, hp: Hyperparameters, auto: AutoAugment | None) -> torch.Tensor:
    """Random crop, horizontal flip, AutoAugment and cutout of an NCHW uint8 batch."""
    n, _, h, w = images.shape
    p = hp.crop_pad_px
    padded = F.pad(images, (p, p, p, p), mode="reflect") if p else images
    offsets = torch.randint(0, 2 * p + 1, (n, 2)).tolist()
    flips = (torch.rand(n) < 0.5).tolist()
    out = torch.empty_like(images)
    for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
        img = padded[i, :, dy : dy + h, dx : dx + w]
        if flip:
            img = img.flip(2)
        out[i] = auto(img) if auto is not None else img
    if hp.cutout_px:
        c = hp.cutout_px
        cy, cx = torch.randint(0, h, (n, 1)), torch.randint(0, w, (n, 1))
        ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
        in_y = (ys >= cy - c // 2) & (ys < cy + c - c // 2)
        in_x = (xs >= cx - c // 2) & (xs < cx + c - c // 2)
        out = out.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0)
    return out


def train_network(train_set: ImageSet, hp: Hyperparameters, seed: int, desc: str = "train") -> torch.nn.Module:
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
    with progress_bar(range(hp.epochs), desc=desc, unit="epoch") as bar:
        for _ in bar:
            batch_images = augment(images, hp, auto)
            order = torch.randperm(len(labels))
            loss_sum, correct = 0.0, 0
            for start in range(0, len(order), hp.batch_size):
                idx = order[start : start + hp.batch_size]
                x = ((batch_images[idx].float() - mean) / std).contiguous(memory_format=torch.channels_last)
                y = labels[idx]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=hp.bf16):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=hp.label_smoothing)
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
    predicted = probs.argmax(1)
    n_classes = len(classifier.meta.classes)
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (images.labels, predicted), 1)
    result = {
        "accuracy": float((predicted == images.labels).mean()),
        "confusion_matrix": confusion.tolist(),
        "n_images": len(images),
        "inference_images_per_s": len(images) / seconds,
    }
    if threshold is not None:
        confident = probs.max(1) >= threshold
        result["threshold"] = threshold
        result["routed_fraction"] = float(confident.mean())
        result["routed_accuracy"] = float((predicted == images.labels)[confident].mean()) if confident.any() else None
    return result


def calibrate_and_choose_threshold(classifier: Classifier, validation: ImageSet, hp: Hyperparameters) -> None:
    """Fit the temperature (when `hp.calibrate`) and choose the routing threshold on `validation`; both are
    written into `classifier.meta` (so model.json holds them and served scores are the calibrated ones)."""
    logits = classifier.logits(validation.images)
    temperature = fit_temperature(logits, validation.labels) if hp.calibrate else 1.0
    classifier.meta.temperature = temperature
    chosen = choose_threshold(probabilities(logits, temperature).numpy(), validation.labels, hp.routed_precision_target)
    chosen["temperature"] = temperature
    chosen["nll_uncalibrated"] = negative_log_likelihood(logits, validation.labels, 1.0)
    chosen["nll_calibrated"] = negative_log_likelihood(logits, validation.labels, temperature)
    classifier.meta.confidence_threshold = chosen


def train_model(train_set: ImageSet, model_dir: Path, hp: Hyperparameters, validation: ImageSet | None = None) -> dict:
    """Train the ensemble, evaluate on `validation` (or a held-out part of `train_set`), save the model."""
    if validation is None and hp.val_fraction > 0:
        train_idx, val_idx = holdout_split(train_set.labels, hp.val_fraction, hp.seed)
        train_set, validation = train_set.subset(train_idx), train_set.subset(val_idx)
    start = time.perf_counter()
    networks = [
        train_network(train_set, hp, seed=hp.seed + k, desc=f"net {k + 1}/{hp.ensemble_size}")
        for k in range(hp.ensemble_size)
    ]
    train_seconds = time.perf_counter() - start
    meta = ModelMeta(width=hp.width, hyperparameters=asdict(hp))
    classifier = Classifier(networks, meta)
    metrics = {
        "train_seconds": train_seconds,
        "train_images_per_s": hp.epochs * hp.ensemble_size * len(train_set) / train_seconds,
        "n_train_images": len(train_set),
    }
    if validation is not None:
        calibrate_and_choose_threshold(classifier, validation, hp)
        metrics["validation"] = evaluate(classifier, validation, meta.confidence_threshold["value"])
        metrics["validation"]["confidence_threshold"] = meta.confidence_threshold
    else:
        meta.confidence_threshold = no_validation_threshold(hp.routed_precision_target)
    meta.metrics = metrics
    save_model_dir(model_dir, networks, meta)
    # The scores drift monitoring compares served traffic against (local_model/baseline.py); without a
    # validation split there is none, and a stale one from an earlier run in this folder must not remain.
    (Path(model_dir) / BASELINE_FILE).unlink(missing_ok=True)
    if validation is not None:
        source = f"validation split ({len(validation)} images)"
        save_baseline(model_dir, build_baseline(classifier.predict_proba(validation.images), meta.classes, source))
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
