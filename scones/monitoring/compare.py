"""Champion against challenger on the same requests: the production variants' captured answers paired with the
shadow variant's (their records share the inferenceId) and compared: agreement, confidence, low-confidence rate,
latency, and drift of the challenger's answers from the champion's. `scones compare` prints it; the monitoring
report (and so the console's Monitoring page) shows it whenever the captures hold a shadow variant's answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from local_model.capture import SHADOW_VARIANT_PREFIX
from local_model.capture_reader import CapturedInference
from scones.monitoring.report import percentile


@dataclass(frozen=True)
class VariantSummary:
    name: str
    answers: int
    mean_top_score: float
    low_confidence_rate: float
    latency_p50_ms: float | None  # None: latencies not known (no running model server)
    latency_p99_ms: float | None


@dataclass(frozen=True)
class Comparison:
    """Champion (the production variants) against challenger (the shadow) on the same requests."""

    pairs: int  # requests both answered
    agreement: float  # share of them where both chose the same class
    production: VariantSummary
    shadow: VariantSummary
    drift: dict | None = None  # the challenger's answers against the champion's (answer_drift)

    def to_dict(self) -> dict:
        return asdict(self)


def argmax(scores: list[float]) -> int:
    return max(range(len(scores)), key=scores.__getitem__)


def compare_records(
    records: list[CapturedInference], threshold: float, latencies: dict[str, list[float]] | None = None
) -> Comparison | None:
    """Pair each shadow answer with the production answer to the same request and compare them; None when no
    request was answered by both. `latencies`: each variant's latencies in ms (the server's GET /variants)."""
    production, shadow = {}, {}
    for record in records:
        if record.inference_id is None or not isinstance(record.output, list) or not record.output:
            continue
        side = shadow if record.variant_name.startswith(SHADOW_VARIANT_PREFIX) else production
        side[record.inference_id] = record
    ids = sorted(set(production) & set(shadow))
    if not ids:
        return None
    agree = sum(argmax(production[i].output) == argmax(shadow[i].output) for i in ids)
    latencies = latencies or {}

    def summary(side: dict, label: str) -> VariantSummary:
        tops = [max(side[i].output) for i in ids]
        names = sorted({side[i].variant_name for i in ids})
        ms = [m for n in names for m in latencies.get(n, [])]
        return VariantSummary(
            f"{label} ({', '.join(names)})",
            len(ids),
            sum(tops) / len(tops),
            sum(t < threshold for t in tops) / len(tops),
            percentile(ms, 50),
            percentile(ms, 99),
        )

    drift = answer_drift([production[i].output for i in ids], [shadow[i].output for i in ids])
    return Comparison(len(ids), agree / len(ids), summary(production, "champion"), summary(shadow, "challenger"), drift)


CONFIDENCE_BINS = 5  # equal bins of the top score over [1/classes, 1]


def answer_drift(champion: list[list[float]], challenger: list[list[float]]) -> dict:
    """Do the challenger's answers to the same requests look like the champion's? The drift rule of
    scones/monitoring/drift.py with the champion's answers as the baseline: on the top score, PSI over
    CONFIDENCE_BINS bins above DEFAULT_PSI_THRESHOLD and a two-sample KS test rejecting at DEFAULT_P_VALUE; on
    the chosen classes, their shares' PSI above the threshold. Below DEFAULT_MIN_WINDOW pairs: not enough data."""
    import numpy as np
    from scipy import stats

    from scones.monitoring.drift import (
        DEFAULT_MIN_WINDOW,
        DEFAULT_P_VALUE,
        DEFAULT_PSI_THRESHOLD,
        population_stability_index,
    )

    n = len(champion)
    if n < DEFAULT_MIN_WINDOW:
        return {
            "enough_data": False,
            "differ": False,
            "reason": f"not enough data: {n} pairs, drift needs {DEFAULT_MIN_WINDOW}",
        }
    classes = len(champion[0])
    edges = np.linspace(1.0 / classes, 1.0, CONFIDENCE_BINS + 1)
    tops = [np.clip([max(a) for a in side], edges[0], edges[-1]) for side in (champion, challenger)]
    counts = [np.histogram(t, bins=edges)[0] for t in tops]
    chosen = [np.bincount([argmax(a) for a in side], minlength=classes) for side in (champion, challenger)]
    psi_confidence = population_stability_index(*counts)
    psi_classes = population_stability_index(*chosen)
    ks_p = float(stats.ks_2samp(*tops, method="asymp").pvalue)
    differ = (psi_confidence > DEFAULT_PSI_THRESHOLD and ks_p < DEFAULT_P_VALUE) or psi_classes > DEFAULT_PSI_THRESHOLD
    reason = (
        f"confidence PSI {psi_confidence:.3f} (KS p = {ks_p:.2g}), class-share PSI {psi_classes:.3f} over {n} pairs"
    )
    return {
        "enough_data": True,
        "differ": bool(differ),
        "reason": ("the challenger's answers differ: " if differ else "no difference: ") + reason,
        "psi_confidence": psi_confidence,
        "psi_classes": psi_classes,
        "ks_p_value": ks_p,
    }


def format_comparison(c: Comparison) -> list[str]:
    lines = [f"{c.pairs} requests answered by both; they chose the same class for {c.agreement:.1%}"]
    for s in (c.production, c.shadow):
        latency = (
            f", latency p50 {s.latency_p50_ms:.1f} ms, p99 {s.latency_p99_ms:.1f} ms"
            if s.latency_p99_ms is not None
            else ""
        )
        lines.append(
            f"  {s.name}: mean top score {s.mean_top_score:.3f}, low confidence {s.low_confidence_rate:.0%}{latency}"
        )
    if c.drift is not None:
        lines.append(f"  drift: {c.drift['reason']}")
    return lines
