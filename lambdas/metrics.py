"""Metrics in CloudWatch's embedded metric format (EMF), stdlib only: one JSON document per line on stdout,
which the Lambda runtime sends to the function's log group and CloudWatch turns into metrics (no API call,
no extra permission). The documents follow the specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
`_aws.Timestamp` in milliseconds, one CloudWatchMetrics directive with a namespace, dimension sets of at most
30 names and at most 100 metrics, each value at the top level beside its dimensions' values.

Powertools for AWS Lambda would do the same, but the functions stay stdlib + boto3 (their zips hold only
lambdas/): this is the one part of it they need.

Every metric is emitted under two dimension sets: [Stack] (what the alarms watch) and [Stack, Class].
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping

NAMESPACE_VAR = "METRICS_NAMESPACE"  # set by cloud/template.yaml
DEFAULT_NAMESPACE = "SconesUnlimited"
STACK_VAR = "STACK_NAME"  # set by cloud/template.yaml; the dimension the alarms select
MAX_METRICS = 100
MAX_DIMENSIONS = 30
UNITS = frozenset({"Count", "None", "Percent", "Milliseconds", "Seconds", "Bytes"})


class MetricsError(ValueError):
    """A metric document that CloudWatch would reject."""


def metric_document(
    metrics: Mapping[str, tuple[float, str]],
    dimensions: Mapping[str, str],
    namespace: str | None = None,
    timestamp_ms: int | None = None,
    properties: Mapping[str, object] | None = None,
) -> dict:
    """One EMF document: `metrics` is {name: (value, unit)}, emitted under [first dimension] and [all of them]."""
    if not metrics or len(metrics) > MAX_METRICS:
        raise MetricsError(f"an EMF document holds 1 to {MAX_METRICS} metrics, not {len(metrics)}")
    if not dimensions or len(dimensions) > MAX_DIMENSIONS:
        raise MetricsError(f"a dimension set holds 1 to {MAX_DIMENSIONS} dimensions, not {len(dimensions)}")
    for name, (value, unit) in metrics.items():
        if unit not in UNITS:
            raise MetricsError(f"metric {name}: unit {unit!r} is not one of {sorted(UNITS)}")
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            raise MetricsError(f"metric {name}: {value!r} is not a number")
    names = list(dimensions)
    dimension_sets = [names[:1], names] if len(names) > 1 else [names]
    document = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace or os.environ.get(NAMESPACE_VAR) or DEFAULT_NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
                }
            ],
        },
        **{key: str(value) for key, value in dimensions.items()},
        **{name: value for name, (value, _) in metrics.items()},
    }
    for key, value in (properties or {}).items():  # searchable in the logs, not metrics
        document.setdefault(key, value)
    return document


def put_metrics(metrics: Mapping[str, tuple[float, str]], label: str, correlation_id: str | None = None) -> dict:
    """Write one EMF line for this stack and class `label` to stdout; returns the document (tests read it)."""
    dimensions = {"Stack": os.environ.get(STACK_VAR) or "local", "Class": label}
    document = metric_document(metrics, dimensions, properties={"correlation_id": correlation_id})
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return document
