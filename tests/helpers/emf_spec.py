"""CloudWatch's embedded metric format, as its specification states it, for the tests: written apart from
lambdas/metrics.py, so the functions' documents are checked against the rules, not against themselves.
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import jsonschema

UNITS = ["Bytes", "Count", "Milliseconds", "None", "Percent", "Seconds"]  # the ones this project may use

# The specification's rules as a schema (the fields CloudWatch reads): a root object with _aws, one or more
# directives, dimension sets of 1..30 names, 1..100 metrics with a name and a known unit.
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 255},
                            "Dimensions": {
                                "type": "array",
                                "items": {"type": "array", "minItems": 1, "maxItems": 30, "items": {"type": "string"}},
                            },
                            "Metrics": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {"Name": {"type": "string"}, "Unit": {"enum": UNITS}},
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def check_emf(document: dict) -> None:
    """Schema, plus what a schema cannot say: every dimension and metric named has its value at the top."""
    jsonschema.validate(document, EMF_SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            assert all(isinstance(document[name], str) for name in dimension_set)
        for metric in directive["Metrics"]:
            assert isinstance(document[metric["Name"]], int | float)
