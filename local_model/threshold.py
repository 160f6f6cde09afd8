"""Choosing the routing threshold from data: temperature scaling of the scores and the lowest threshold whose
routed images reach a precision target on the validation split, plus the precision/coverage curve.

An image is routed when its top-class probability is >= the threshold (lambdas/filter_low_confidence.py);
coverage is the share of images routed, routed precision the share of routed images whose top class is right.
This module cannot import the workflow's default threshold (the container holds local_model/ only): when no
threshold can be chosen it records `value: None` and why, and deploy falls back to that default.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_VALIDATION_IMAGES = 50  # below this a precision of 0.99 cannot be told from 0.95: fall back instead
THRESHOLD_DECIMALS = 4  # thresholds are floored to this many decimals, and measured as floored
TEMPERATURE_BOUNDS = (0.05, 20.0)  # search range of the temperature (log-uniform golden-section search)


def negative_log_likelihood(logits: torch.Tensor, labels: np.ndarray, temperature: float) -> float:
    """Mean NLL of the true class under the averaged probabilities at `temperature`."""
    import torch  # here, not above: the threshold and curve functions serve reports that need no torch

    from local_model.classifier import probabilities

    probs = probabilities(logits, temperature).clamp_min(1e-12)
    return float(-torch.log(probs[torch.arange(len(labels)), torch.as_tensor(labels)]).mean())


def fit_temperature(logits: torch.Tensor, labels: np.ndarray, iterations: int = 80) -> float:
    """The single scalar T minimising the validation NLL of softmax(logits / T) averaged over members and
    views (Guo et al. 2017), by golden-section search on log T; 1.0 when there is nothing to fit on."""
    if len(labels) == 0:
        return 1.0
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = (negative_log_likelihood(logits, labels, math.exp(x)) for x in (a, b))
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = negative_log_likelihood(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = negative_log_likelihood(logits, labels, math.exp(b))
    return round(math.exp((low + high) / 2), 6)


def routed_precision_coverage(scores: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float | None, float]:
    """(routed precision or None when nothing is routed, coverage) at `threshold`; `scores` are top-class
    probabilities, `correct` whether the top class is the true one."""
    scores, correct = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    if len(scores) == 0:
        return None, 0.0
    routed = scores >= threshold
    precision = float(correct[routed].mean()) if routed.any() else None
    return precision, float(routed.mean())


def precision_coverage_curve(scores: np.ndarray, correct: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, routed precision, coverage) at every distinct floored score, lowest threshold first."""
    scores = np.asarray(scores, dtype=float)
    candidates = np.unique(np.floor(scores * 10**THRESHOLD_DECIMALS) / 10**THRESHOLD_DECIMALS)
    curve = []
    for t in candidates:
        precision, coverage = routed_precision_coverage(scores, correct, float(t))
        curve.append((round(float(t), THRESHOLD_DECIMALS), precision, coverage))
    return curve


def choose_threshold(probs: np.ndarray, labels: np.ndarray, target: float, source: str = "validation") -> dict:
    """The lowest threshold whose routed validation images have precision >= `target` (the most coverage
    that reaches it), with the precision and coverage it gives. `value` is None (deploy uses the workflow's
    default) when the split has fewer than MIN_VALIDATION_IMAGES images or no threshold reaches the target."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    scores, correct = probs.max(1), probs.argmax(1) == labels
    chosen = {"target_precision": target, "n_images": len(labels), "decimals": THRESHOLD_DECIMALS}
    reason = None
    if len(labels) < MIN_VALIDATION_IMAGES:
        reason = f"the validation split has {len(labels)} images, fewer than {MIN_VALIDATION_IMAGES}"
    else:
        reaching = [(t, p, c) for t, p, c in precision_coverage_curve(scores, correct) if p is not None and p >= target]
        if reaching:
            t, p, c = reaching[0]
            return {**chosen, "value": t, "precision": p, "coverage": c, "source": source}
        best = max(p for _, p, _ in precision_coverage_curve(scores, correct) if p is not None)
        reason = f"no threshold reaches routed precision {target} on {len(labels)} validation images (best {best:.3f})"
    logger.warning("confidence threshold: %s; deploy will use the workflow's default threshold", reason)
    return {**chosen, "value": None, "precision": None, "coverage": None, "source": "fallback", "reason": reason}


def no_validation_threshold(target: float, detail: str = "") -> dict:
    reason = "training had no validation split (val_fraction=0 and no validation channel)"
    reason += f", and {detail}" if detail else ""
    logger.warning("confidence threshold: %s; deploy will use the workflow's default threshold", reason)
    return {"target_precision": target, "n_images": 0, "value": None, "source": "fallback", "reason": reason}


WILSON_Z_95 = 1.959963984540054  # the standard normal quantile of 0.975


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (95% by default): unlike the normal approximation it stays
    inside [0, 1] and is not empty at 0 or `trials` successes, as routed precision near 1 often is. None for no
    trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 or `trials` successes the bound is exactly 0 or 1 (the formula gives it up to rounding).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high
