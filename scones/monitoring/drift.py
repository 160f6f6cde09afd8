"""Drift detection: does a window of served inferences still look like the model's baseline?

Two views of each window are compared with the baseline the training wrote (local_model/baseline.py):
the top-class probabilities (population stability index on the baseline's fixed bins, and a two-sample
Kolmogorov-Smirnov test on the raw scores) and the predicted classes (PSI on the class shares, and a
chi-square test of the two class-count rows).

Decision rule (chosen by measurement on real images, benchmarks/drift.py): a window has drifted when, on
either view, PSI exceeds `psi_threshold` (0.2, the usual rule of thumb for a real shift) AND that view's
test rejects "same distribution" at `p_value` (0.01). Both, because each alone fails with a baseline of
~70-100 validation images: PSI on 7 bins has a sampling bias of roughly (bins - 1) * (1/n_baseline +
1/n_window), so 24-36% of unshifted 50- and 100-image windows of unseen real images exceeded 0.2 (full
recipe); the tests alone flag small, detectable changes. Together they flagged at most 0.6% of unshifted
50-image windows and 0.2% of 100-image ones (quick and full recipes, 3 models each), while catching class
mixes and the shifts that change a model's answers. Below `min_window` (50) the answer is "not enough data",
never a guess: at 25, a 90%-one-class mix was caught in only 16-64% of windows.

The statistics see only the model's answers: a shift the model is indifferent to (the full recipe, trained
with AutoAugment, scores darkened images as accurately as clean ones) is not flagged, by design.

Host only (SciPy); no CLI or plotting here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from local_model.baseline import Baseline, BaselineError, NoBaselineError, confidence_histogram, load_baseline

__all__ = [
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_PSI_THRESHOLD",
    "DEFAULT_P_VALUE",
    "Baseline",
    "BaselineError",
    "DriftInputError",
    "DriftReport",
    "NoBaselineError",
    "WindowDrift",
    "detect_drift",
    "drift_by_window",
    "load_baseline",
    "population_stability_index",
    "scores_of",
]

DEFAULT_PSI_THRESHOLD = 0.2  # PSI above this on a view is drift (benchmarks/drift.py) ...
DEFAULT_P_VALUE = 0.01  # ... and the view's test must reject "same distribution" at this level
DEFAULT_MIN_WINDOW = 50  # fewer inferences than this: "not enough data" (benchmarks/drift.py)
# Added to every bin's count before taking shares, so an empty bin on either side has a finite log
# (Jeffreys' prior); it also keeps a single stray score in an empty bin from dominating the index.
PSEUDO_COUNT = 0.5


class DriftInputError(ValueError):
    """The window's inputs do not fit the baseline (lengths differ, unknown class, score not in [0, 1])."""


def population_stability_index(
    expected_counts: Sequence[float], actual_counts: Sequence[float], pseudo_count: float = PSEUDO_COUNT
) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e), with e and a the two sides' shares after adding
    `pseudo_count` to every bin. 0 for identical shares; 0.1-0.2 is usually read as a moderate shift."""
    expected = np.asarray(expected_counts, dtype=float) + pseudo_count
    actual = np.asarray(actual_counts, dtype=float) + pseudo_count
    if expected.shape != actual.shape or expected.ndim != 1 or len(expected) < 1:
        raise DriftInputError(f"PSI needs two count vectors of one length, got {expected.shape} and {actual.shape}")
    if (expected <= 0).any() or (actual <= 0).any():
        raise DriftInputError("PSI needs non-negative counts and a positive pseudo count or no empty bins")
    e, a = expected / expected.sum(), actual / actual.sum()
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReport:
    n_window: int  # inferences compared
    n_baseline: int
    enough_data: bool  # False: the window is below min_window and no statistic was computed
    drifted: bool
    reason: str  # one line for an operator
    psi_confidence: float | None
    psi_classes: float | None
    ks_statistic: float | None  # two-sample KS on the raw top-class probabilities (None: no raw baseline)
    ks_p_value: float | None
    chi2_p_value: float | None  # chi-square of the baseline's vs the window's class counts
    window_confidence_counts: tuple[int, ...]
    window_class_counts: tuple[int, ...]
    mean_confidence: float | None
    baseline_mean_confidence: float | None
    psi_threshold: float
    p_value_threshold: float
    min_window: int

    def to_dict(self) -> dict:
        return asdict(self)


def detect_drift(
    baseline: Baseline,
    confidences: Sequence[float],
    classes: Sequence[str],
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    min_window: int = DEFAULT_MIN_WINDOW,
    p_value: float = DEFAULT_P_VALUE,
) -> DriftReport:
    """Compare one window (the top-class probability and predicted class of each inference) with `baseline`."""
    if len(confidences) != len(classes):
        raise DriftInputError(f"{len(confidences)} confidences but {len(classes)} classes")
    unknown = sorted(set(classes) - set(baseline.classes))
    if unknown:
        raise DriftInputError(f"classes {unknown} are not the baseline's {list(baseline.classes)}")
    scores = np.asarray(confidences, dtype=float)
    if not np.all(np.isfinite(scores)) or (scores < 0).any() or (scores > 1).any():
        raise DriftInputError("confidences must be probabilities in [0, 1]")
    n = len(scores)
    class_counts = tuple(sum(1 for c in classes if c == name) for name in baseline.classes)
    conf_counts = tuple(int(c) for c in confidence_histogram(scores, baseline.confidence_bin_edges))
    base_mean = float(np.mean(baseline.confidences)) if baseline.confidences else None
    common = {
        "n_window": n,
        "n_baseline": baseline.n_images,
        "window_confidence_counts": conf_counts,
        "window_class_counts": class_counts,
        "mean_confidence": float(scores.mean()) if n else None,
        "baseline_mean_confidence": base_mean,
        "psi_threshold": psi_threshold,
        "p_value_threshold": p_value,
        "min_window": min_window,
    }
    if n < min_window:
        return DriftReport(
            enough_data=False,
            drifted=False,
            reason=f"not enough data: {n} inferences in the window, drift needs at least {min_window}",
            psi_confidence=None,
            psi_classes=None,
            ks_statistic=None,
            ks_p_value=None,
            chi2_p_value=None,
            **common,
        )
    psi_conf = population_stability_index(baseline.confidence_counts, conf_counts)
    psi_cls = population_stability_index(baseline.class_counts, class_counts)
    ks_stat = ks_p = None
    if baseline.confidences:
        # asymptotic: the exact method fails on the many tied scores near 1 and warns
        ks = stats.ks_2samp(baseline.confidences, scores, method="asymp")
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    conf_p = ks_p if ks_p is not None else _chi2_p_value(baseline.confidence_counts, conf_counts)
    chi2_p = _chi2_p_value(baseline.class_counts, class_counts)
    over = [
        f"{name} PSI {psi:.3f} > {psi_threshold} (p = {p:.2g} < {p_value})"
        for name, psi, p in (("confidence", psi_conf, conf_p), ("class-share", psi_cls, chi2_p))
        if psi > psi_threshold and p < p_value
    ]
    drifted = bool(over)
    if drifted:
        reason = f"drift: {' and '.join(over)} over {n} inferences"
    else:
        reason = (
            f"no drift: confidence PSI {psi_conf:.3f} (p = {conf_p:.2g}), class-share PSI {psi_cls:.3f} "
            f"(p = {chi2_p:.2g}); drift needs PSI > {psi_threshold} with p < {p_value}"
        )
    return DriftReport(
        enough_data=True,
        drifted=drifted,
        reason=reason,
        psi_confidence=psi_conf,
        psi_classes=psi_cls,
        ks_statistic=ks_stat,
        ks_p_value=ks_p,
        chi2_p_value=chi2_p,
        **common,
    )


def _chi2_p_value(expected: Sequence[int], actual: Sequence[int]) -> float | None:
    table = np.array([expected, actual])
    table = table[:, table.sum(0) > 0]  # a class neither side predicted carries no information
    if table.shape[1] < 2:
        return 1.0  # both sides predict the one same class
    return float(stats.chi2_contingency(table).pvalue)


def scores_of(outputs: Iterable[object], classes: Sequence[str]) -> tuple[list[float], list[str], int]:
    """Top-class probability and predicted class of each served answer ([p_class0, p_class1, ...], as the
    model server returns and data capture stores it); answers of another shape are counted, not fatal."""
    confidences, predicted, skipped = [], [], 0
    for output in outputs:
        if (
            isinstance(output, list)
            and len(output) == len(classes)
            and all(isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) for p in output)
            and all(0.0 <= p <= 1.0 for p in output)
        ):
            best = max(range(len(output)), key=output.__getitem__)
            confidences.append(float(output[best]))
            predicted.append(classes[best])
        else:
            skipped += 1
    return confidences, predicted, skipped


@dataclass(frozen=True)
class WindowDrift:
    first_inference_time: str
    last_inference_time: str
    report: DriftReport

    def to_dict(self) -> dict:
        return {**asdict(self), "report": self.report.to_dict()}


def drift_by_window(
    records: Iterable[object],
    baseline: Baseline,
    window_size: int,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    min_window: int = DEFAULT_MIN_WINDOW,
    p_value: float = DEFAULT_P_VALUE,
) -> list[WindowDrift]:
    """Consecutive windows of `window_size` captured inferences (objects with `.output` and
    `.inference_time`, e.g. local_model.capture.CapturedInference), in inference-time order. The last,
    shorter window is kept: it reports "not enough data" when it is below `min_window`. Records whose
    output is not a probability list are left out."""
    if window_size < 1:
        raise DriftInputError(f"window_size must be at least 1, got {window_size}")
    usable = []
    for record in sorted(records, key=lambda r: r.inference_time):
        confidences, predicted, _ = scores_of([record.output], baseline.classes)
        if confidences:
            usable.append((record.inference_time, confidences[0], predicted[0]))
    windows = []
    for start in range(0, len(usable), window_size):
        chunk = usable[start : start + window_size]
        report = detect_drift(
            baseline, [c for _, c, _ in chunk], [p for _, _, p in chunk], psi_threshold, min_window, p_value
        )
        windows.append(WindowDrift(chunk[0][0], chunk[-1][0], report))
    return windows
