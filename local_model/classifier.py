"""The trained classifier as it is saved and loaded: weights, metadata and prediction.

A model directory (SageMaker's /opt/ml/model, packed by SageMaker or by `pack_model_tar`
into model.tar.gz) holds two files, and a third when training had a validation split:

- `model.pt`: `{"state_dicts": [...]}`, one state_dict per ensemble member (no pickled modules;
  loaded with `weights_only=True`).
- `model.json`: architecture, class names, preprocessing constants and validation metrics.
- `baseline.json`: the validation split's score and class distributions, for drift monitoring
  (local_model/baseline.py); loading the model does not need it.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from local_model.artifact import (  # noqa: F401 (pack/unpack: still importable from here)
    CLASSES,
    IMAGE_SIZE,
    META_FILE,
    WEIGHTS_FILE,
    ModelFormatError,
    pack_model_tar,
    unpack_model_tar,
)
from local_model.fused import FusedEnsemble
from local_model.model import ResNet9

# Per-channel RGB mean/std of the CIFAR-100 training set, in [0, 1] units.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass
class ModelMeta:
    architecture: str = "ResNet9"
    width: int = 16
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    image_size: int = IMAGE_SIZE
    mean: list[float] = field(default_factory=lambda: list(CIFAR100_MEAN))
    std: list[float] = field(default_factory=lambda: list(CIFAR100_STD))
    flip_tta: bool = True
    # Test-time shifts: each view (the image, its flip) is also scored moved by this many pixels diagonally in
    # the four directions (reflect-padded, as training's crops), 5x the views; 0 = none.
    tta_shift_px: int = 0
    # Logits are divided by this before the softmax (temperature scaling, fitted on the validation split by
    # training); a model.json written before it existed has none and means 1.0.
    temperature: float = 1.0
    # How training chose the routing threshold (local_model/threshold.py): value (None: no data-chosen
    # threshold, deploy falls back to the workflow's default), target, precision, coverage, n, source.
    confidence_threshold: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    hyperparameters: dict = field(default_factory=dict)
    format_version: int = 1


def build_network(meta: ModelMeta) -> torch.nn.Module:
    if meta.architecture != "ResNet9":
        raise ModelFormatError(f"unknown architecture {meta.architecture!r} in {META_FILE}")
    return ResNet9(num_classes=len(meta.classes), width=meta.width)


class Classifier:
    """An ensemble of trained networks with the preprocessing they were trained with."""

    def __init__(self, networks: list[torch.nn.Module], meta: ModelMeta):
        if not networks:
            raise ModelFormatError("a classifier needs at least one network")
        self.networks = [net.eval() for net in networks]
        self.meta = meta
        self._mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(meta.std).view(1, 3, 1, 1)
        self._fused: FusedEnsemble | None = None

    def fuse(self) -> Classifier:
        """Run the members as one network of grouped layers from now on (local_model/fused.py): same logits, one
        pass. For serving; the members must not change afterwards (the fused copy would not follow)."""
        self._fused = FusedEnsemble(self.networks)
        return self

    def normalize(self, images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
        """NHWC uint8 RGB images -> normalized NCHW float tensor."""
        x = torch.as_tensor(images_uint8)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected NHWC RGB images, got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def logits(self, images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw logits of every member and view, shape (members * views, N, num_classes), uncalibrated."""
        x = self.normalize(images_uint8)
        # Every view goes through each network as one batch: for a single served image that is ~20%
        # faster than a forward pass per view (eval-mode BatchNorm makes the results identical).
        views = self.views(x)
        n_views = len(views) // x.shape[0]
        if self._fused is not None:  # (members, views * N, C), member-major like the loop below
            return self._fused(views).float().reshape(len(self.networks) * n_views, x.shape[0], -1)
        return torch.cat([net(views).float().view(n_views, x.shape[0], -1) for net in self.networks])

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """The test-time views of a normalized NCHW batch, view-major: (views * N, C, H, W)."""
        views = [x, x.flip(3)] if self.meta.flip_tta else [x]
        s = self.meta.tta_shift_px
        if s:
            h, w = x.shape[2:]
            padded = [F.pad(v, (s, s, s, s), mode="reflect") for v in views]
            views += [p[:, :, dy : dy + h, dx : dx + w] for p in padded for dy in (0, 2 * s) for dx in (0, 2 * s)]
        return torch.cat(views)

    def view_count(self) -> int:
        """How many views of each image are scored by each member."""
        return (2 if self.meta.flip_tta else 1) * (5 if self.meta.tta_shift_px else 1)

    def predict_proba(self, images_uint8: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities, shape (N, num_classes): softmax(logits / temperature) averaged over members
        and views."""
        return probabilities(self.logits(images_uint8), self.meta.temperature).numpy()


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(members * views, N, C) logits -> (N, C) probabilities at `temperature`, averaged over the first axis."""
    return torch.softmax(logits / temperature, dim=-1).mean(0)


def save_model_dir(model_dir: Path, networks: list[torch.nn.Module], meta: ModelMeta) -> None:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state_dicts = [{k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()} for net in networks]
    torch.save({"state_dicts": state_dicts}, model_dir / WEIGHTS_FILE)
    (model_dir / META_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")


def load_model_dir(model_dir: Path) -> Classifier:
    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / META_FILE, model_dir / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ModelFormatError(f"model directory {model_dir} has no {path.name}")
    try:
        meta = ModelMeta(**json.loads(meta_path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ModelFormatError(f"{meta_path} is not a valid model description: {e}") from e
    try:
        payload = torch.load(weights_path, map_location="cpu", weights_only=True)
        networks = []
        for state_dict in payload["state_dicts"]:
            net = build_network(meta)
            net.load_state_dict(state_dict)
            networks.append(net)
    except (KeyError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ModelFormatError(f"{weights_path} does not hold weights for {meta.architecture}: {e}") from e
    return Classifier(networks, meta)
