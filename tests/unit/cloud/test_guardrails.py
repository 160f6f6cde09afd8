"""cloud/guardrails.py: the rollback alarms' condition, evaluated on one variant's window."""

from __future__ import annotations

from cloud.guardrails import Guardrails, alarms_in
from scones.pipeline.rollout import VariantWindow


def window(invocations=100, errors=0, low=0, latencies=(5.0,) * 100):
    return VariantWindow(invocations, errors, low, tuple(latencies))


def test_a_healthy_variant_sets_off_nothing():
    assert alarms_in(window(low=20)) == []


def test_each_alarm_names_its_value_and_threshold():
    assert alarms_in(window(low=40)) == ["low-confidence rate 40% > 30%"]
    assert alarms_in(window(errors=10)) == ["error rate 10% > 5%"]
    assert alarms_in(window(latencies=[5.0] * 98 + [2000.0] * 2)) == ["latency p99 2000 ms > 1000 ms"]


def test_too_few_invocations_are_missing_data_not_an_alarm():
    assert alarms_in(window(invocations=5, low=5, latencies=[1.0] * 5)) == []
    assert alarms_in(window(invocations=5, low=5), Guardrails(min_invocations=1)) != []


def test_the_low_confidence_rate_is_over_answers_not_errors():
    assert window(invocations=10, errors=5, low=5).low_confidence_rate == 1.0


def test_the_window_reads_as_cloudwatch_would():
    assert window(latencies=()).latency_p99_ms == 0.0
    assert window(latencies=range(1, 101)).latency_p99_ms == 99
