"""The model's baseline for drift monitoring: what its scores look like on the validation split.

Training writes `baseline.json` beside model.json (so it travels in model.tar.gz); monitoring compares
captured inferences against it (scones/monitoring/drift.py). A file of its own rather than a block in model.json:
model.json is parsed into ModelMeta by every server, and an older server would reject an unknown key,
while a file it does not know is simply ignored; and monitoring reads it without loading the weights.
numpy and the standard library only: it runs in the training container.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BASELINE_FILE = "baseline.json"
FORMAT_VERSION = 1
# Fixed bins of the top-class probability. Fine near 1, where a trained model puts most of its scores
# and where darkened or unfamiliar images first lose confidence; the first bin starts at 0 so the edges
# hold for any number of classes (with two classes the top probability is never below 0.5).
CONFIDENCE_BIN_EDGES = (0.0, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# The raw scores are kept (for a two-sample test) up to this many; a validation split is ~100 images.
MAX_RAW_SCORES = 5000


class BaselineError(Exception):
    """A baseline file is unreadable, malformed or inconsistent."""


class NoBaselineError(BaselineError):
    """The model has no baseline: it was trained without a validation split (val_fraction=0 and no
    validation channel), or before training wrote one."""


@dataclass(frozen=True)
class Baseline:
    classes: tuple[str, ...]
    confidence_bin_edges: tuple[float, ...]  # len(confidence_counts) + 1 edges; the last bin includes 1.0
    confidence_counts: tuple[int, ...]  # images whose top-class probability falls in each bin
    class_counts: tuple[int, ...]  # images predicted as each of `classes`
    confidences: tuple[float, ...] | None  # the raw top-class probabilities; None when there were too many
    n_images: int
    source: str  # where the scores came from, e.g. "validation split (100 images)"
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: object, where: str = "baseline") -> Baseline:
        """Parse and check a baseline; every inconsistency is a BaselineError naming `where`."""
        if not isinstance(raw, dict):
            raise BaselineError(f"{where} is not a JSON object")
        try:
            baseline = cls(
                classes=tuple(str(c) for c in raw["classes"]),
                confidence_bin_edges=tuple(float(e) for e in raw["confidence_bin_edges"]),
                confidence_counts=tuple(int(c) for c in raw["confidence_counts"]),
                class_counts=tuple(int(c) for c in raw["class_counts"]),
                confidences=None if raw.get("confidences") is None else tuple(float(s) for s in raw["confidences"]),
                n_images=int(raw["n_images"]),
                source=str(raw.get("source", "")),
                format_version=int(raw.get("format_version", FORMAT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BaselineError(f"{where} is not a baseline ({type(e).__name__}: {e})") from e
        baseline.check(where)
        return baseline

    def check(self, where: str = "baseline") -> None:
        problems = []
        if self.format_version != FORMAT_VERSION:
            problems.append(f"format_version {self.format_version} (this code reads {FORMAT_VERSION})")
        edges = self.confidence_bin_edges
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            problems.append(f"bin edges {list(edges)} are not increasing")
        if not all(math.isfinite(e) and 0.0 <= e <= 1.0 for e in edges):
            problems.append(f"bin edges {list(edges)} are not probabilities")
        if len(self.confidence_counts) != len(edges) - 1:
            problems.append(f"{len(self.confidence_counts)} confidence counts for {len(edges) - 1} bins")
        if len(self.class_counts) != len(self.classes) or len(self.classes) < 2:
            problems.append(f"{len(self.class_counts)} class counts for classes {list(self.classes)}")
        counts = (*self.confidence_counts, *self.class_counts)
        if any(c < 0 for c in counts):
            problems.append("negative counts")
        if (
            self.n_images <= 0
            or sum(self.confidence_counts) != self.n_images
            or sum(self.class_counts) != self.n_images
        ):
            problems.append(
                f"n_images {self.n_images} but {sum(self.confidence_counts)} in the confidence bins "
                f"and {sum(self.class_counts)} in the classes"
            )
        if self.confidences is not None and (
            len(self.confidences) != self.n_images or not all(0.0 <= s <= 1.0 for s in self.confidences)
        ):
            problems.append(f"{len(self.confidences)} raw confidences (in [0, 1]) for {self.n_images} images")
        if problems:
            raise BaselineError(f"{where} is inconsistent: {'; '.join(problems)}")


def confidence_histogram(confidences: np.ndarray, edges: tuple[float, ...] = CONFIDENCE_BIN_EDGES) -> np.ndarray:
    """Counts per bin; a score outside [edges[0], edges[-1]] is clipped into the end bins."""
    clipped = np.clip(np.asarray(confidences, dtype=float), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=np.asarray(edges))  # numpy's last bin is closed: 1.0 counts
    return counts


def build_baseline(probabilities: np.ndarray, classes: list[str], source: str) -> Baseline:
    """The baseline of (N, C) class probabilities, e.g. the model's scores on its validation split."""
    probs = np.asarray(probabilities, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(classes) or len(probs) == 0:
        raise BaselineError(f"need (N>0, {len(classes)}) probabilities, got shape {probs.shape}")
    top = probs.max(1)
    predicted = np.bincount(probs.argmax(1), minlength=len(classes))
    baseline = Baseline(
        classes=tuple(classes),
        confidence_bin_edges=CONFIDENCE_BIN_EDGES,
        confidence_counts=tuple(int(c) for c in confidence_histogram(top)),
        class_counts=tuple(int(c) for c in predicted),
        confidences=tuple(round(float(s), 6) for s in top) if len(top) <= MAX_RAW_SCORES else None,
        n_images=len(top),
        source=source,
    )
    baseline.check()
    return baseline


def save_baseline(model_dir: Path, baseline: Baseline) -> Path:
    path = Path(model_dir) / BASELINE_FILE
    path.write_text(json.dumps(baseline.to_dict(), indent=1) + "\n")
    return path


def load_baseline(model: str | Path) -> Baseline:
    """The baseline of a model directory, a model.tar.gz or a baseline.json itself."""
    model = Path(model)
    if model.is_dir():
        path = model / BASELINE_FILE
        if not path.is_file():
            raise NoBaselineError(
                f"{model} has no {BASELINE_FILE}: the model was trained without a validation split "
                "(val_fraction=0 and no validation channel) or before training saved baselines"
            )
        return _parse(path.read_bytes(), str(path))
    if model.name == BASELINE_FILE and model.is_file():
        return _parse(model.read_bytes(), str(model))
    if model.is_file():
        return _parse(_read_tar_member(model), f"{model}:{BASELINE_FILE}")
    raise BaselineError(f"{model} is neither a model directory, a model.tar.gz nor a {BASELINE_FILE}")


def _read_tar_member(tar_path: Path) -> bytes:
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            names = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            if BASELINE_FILE not in names:
                raise NoBaselineError(
                    f"{tar_path} holds no {BASELINE_FILE} (files: {sorted(names)}): the model was trained "
                    "without a validation split or before training saved baselines"
                )
            with tar.extractfile(names[BASELINE_FILE]) as f:
                return f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BaselineError(f"{tar_path} is not a readable model.tar.gz: {e}") from e


def _parse(data: bytes, where: str) -> Baseline:
    try:
        raw = json.load(io.BytesIO(data))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BaselineError(f"{where} is not JSON: {e}") from e
    return Baseline.from_dict(raw, where)
