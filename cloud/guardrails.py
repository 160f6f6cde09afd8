"""The rollback alarms of a model update, defined once: the template's alarms that SageMaker's deployment
guardrails watch (AutoRollbackConfiguration) use these thresholds as their parameters' defaults, and `scones
deploy --canary` evaluates the same condition on the local endpoint's new variant during its bake
(tests/unit/cloud/test_guardrails.py ties the template to this module).

An alarm fires when, over the window watched, a metric is beyond its threshold:
- low confidence: the share of answers whose top score is under the confidence threshold (the template's
  LowConfidenceRateAlarm: the LowConfidence metric's Average), above LOW_CONFIDENCE_RATE;
- errors: the share of invocations the model answered with an error (the template's ModelErrorRateAlarm:
  SageMaker's Invocation5XXErrors Average), above ERROR_RATE;
- latency: the 99th percentile of the model's latency (the template's ModelLatencyAlarm: SageMaker's
  ModelLatency p99, in microseconds), above LATENCY_P99_MS.
"""

from __future__ import annotations

from dataclasses import dataclass

LOW_CONFIDENCE_RATE = 0.3  # the template's LowConfidenceAlarmRate default
ERROR_RATE = 0.05  # the template's ModelErrorAlarmRate default
LATENCY_P99_MS = 1000.0  # the template's ModelLatencyAlarmMicroseconds default / 1000: 2 busy cores stay well under
# Fewer answers than this in the window say nothing yet: no alarm is evaluated (CloudWatch's "missing data",
# treated as not breaching, as the template's TreatMissingData says).
MIN_INVOCATIONS = 10


@dataclass(frozen=True)
class Guardrails:
    low_confidence_rate: float = LOW_CONFIDENCE_RATE
    error_rate: float = ERROR_RATE
    latency_p99_ms: float = LATENCY_P99_MS
    min_invocations: int = MIN_INVOCATIONS


DEFAULT_GUARDRAILS = Guardrails()


def alarms_in(window, guardrails: Guardrails = DEFAULT_GUARDRAILS) -> list[str]:
    """The alarms a variant's window sets off, each named with its value and threshold; [] when none (or too few
    data). `window` has invocations, low_confidence_rate, error_rate and latency_p99_ms (a VariantWindow of
    scones/pipeline/rollout.py)."""
    if window.invocations < guardrails.min_invocations:
        return []
    fired = []
    if window.low_confidence_rate > guardrails.low_confidence_rate:
        fired.append(f"low-confidence rate {window.low_confidence_rate:.0%} > {guardrails.low_confidence_rate:.0%}")
    if window.error_rate > guardrails.error_rate:
        fired.append(f"error rate {window.error_rate:.0%} > {guardrails.error_rate:.0%}")
    if window.latency_p99_ms > guardrails.latency_p99_ms:
        fired.append(f"latency p99 {window.latency_p99_ms:.0f} ms > {guardrails.latency_p99_ms:.0f} ms")
    return fired
