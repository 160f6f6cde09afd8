"""Champion against challenger on the same requests: the production variants' captured answers paired with the
shadow variant's (their records share the inferenceId) and compared: agreement, confidence, low-confidence rate,
latency. `scones compare` prints it; the monitoring report (and so the console's Monitoring page) shows it
whenever the captures hold a shadow variant's answers."""

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

    return Comparison(len(ids), agree / len(ids), summary(production, "champion"), summary(shadow, "challenger"))


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
    return lines
