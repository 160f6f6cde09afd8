"""The template's model-update guardrails: the endpoint's DeploymentConfig (blue/green canary, baking, automatic
rollback on alarms) and the optional shadow challenger, checked against the CloudFormation resource schemas that
cfn-lint ships (what CloudFormation accepts for these properties), with the parameters' defaults filled in."""

from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import pytest

from cloud import guardrails
from cloud.artifacts import TEMPLATE_PATH
from cloud.template import load_template

TEMPLATE = load_template(TEMPLATE_PATH.read_text())
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]


def resource_schema(resource_type: str) -> dict:
    schemas = resources.files("cfnlint") / "data" / "schemas"
    provider = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    return json.loads((schemas / "resources" / f"{provider[resource_type]}.json").read_text())


# What cloud/promote.py passes for the parameters that have no default.
DEPLOYED_VALUES = {
    "ArtifactBucket": "scones-artifacts",
    "ModelEndpointName": "scones-image-classifier",
    "ModelImageRepository": "scones-model",
    "ModelImageTag": "sha256-0123",
    "ModelDataKey": "models/champion.tar.gz",
    "ChallengerModelDataKey": "models/challenger.tar.gz",
}


def default_of(name: str):
    parameter = PARAMETERS[name]
    value = DEPLOYED_VALUES.get(name, parameter.get("Default", ""))
    return int(value) if parameter["Type"] == "Number" and float(value).is_integer() else value


def check(properties: dict, resource_type: str) -> None:
    """Validate against the resource's schema. Not jsonschema.validate: its check of the schema itself fails on
    the ECMAScript patterns (\\p{L}) of properties we do not use, such as Tags."""
    errors = sorted(jsonschema.Draft7Validator(resource_schema(resource_type)).iter_errors(properties), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def resolved(node, conditions: dict[str, bool]):
    """`node` with parameters at their defaults, other Refs and GetAtts as placeholder names, and Fn::If / NoValue
    decided by `conditions`: what CloudFormation hands the resource provider."""
    if isinstance(node, list):
        return [v for v in (resolved(item, conditions) for item in node) if v is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        name = node["Ref"]
        if name == "AWS::NoValue":
            return NO_VALUE
        return default_of(name) if name in PARAMETERS else f"{name}-physical-id"
    if set(node) == {"Fn::GetAtt"}:
        return attribute(*node["Fn::GetAtt"])
    if set(node) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(substituted(m.group(1))), node["Fn::Sub"])
    if set(node) == {"Fn::If"}:
        condition, if_true, if_false = node["Fn::If"]
        return resolved(if_true if conditions[condition] else if_false, conditions)
    out = {key: resolved(value, conditions) for key, value in node.items()}
    return {key: value for key, value in out.items() if value is not NO_VALUE}


NO_VALUE = object()
PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::Partition": "aws",
    "AWS::StackName": "scones",
}


def attribute(resource: str, name: str) -> str:
    """A plausible value of a resource's attribute, in the form SageMaker's patterns expect."""
    if name == "Arn":
        kind = "iam::123456789012:role" if RESOURCES[resource]["Type"] == "AWS::IAM::Role" else "s3::"
        return f"arn:aws:{kind}/{resource.lower()}" if "iam" in kind else f"arn:aws:s3:::{resource.lower()}"
    return f"{resource.lower()}-{name.lower()}"


def substituted(name: str):
    if name in PSEUDO:
        return PSEUDO[name]
    if "." in name:
        return attribute(*name.split(".", 1))
    return default_of(name) if name in PARAMETERS else f"{name.lower()}-physical-id"


@pytest.mark.parametrize("challenger", [True, False], ids=["with-challenger", "without"])
@pytest.mark.parametrize("resource", ["Endpoint", "EndpointConfig", "ChallengerModel", "Model"])
def test_endpoint_resources_are_what_cloudformation_accepts(resource, challenger):
    conditions = {"ChallengerWanted": challenger, "ModelEndpointWanted": True}
    properties = resolved(RESOURCES[resource]["Properties"], conditions)
    check(properties, RESOURCES[resource]["Type"])


def test_parameter_ranges_stay_within_what_sagemaker_accepts():
    schema = resource_schema("AWS::SageMaker::Endpoint")["definitions"]
    policy = schema["BlueGreenUpdatePolicy"]["properties"]
    routing = schema["TrafficRoutingConfig"]["properties"]
    for parameter, limits in [
        ("UpdateMaximumSeconds", policy["MaximumExecutionTimeoutInSeconds"]),
        ("UpdateTerminationWaitSeconds", policy["TerminationWaitInSeconds"]),
        ("CanaryBakeSeconds", routing["WaitIntervalInSeconds"]),
    ]:
        assert int(PARAMETERS[parameter]["MinValue"]) >= limits["minimum"], parameter
        assert int(PARAMETERS[parameter]["MaxValue"]) <= limits["maximum"], parameter


def test_the_update_is_a_canary_with_a_bake_rolled_back_by_three_alarms():
    config = RESOURCES["Endpoint"]["Properties"]["DeploymentConfig"]
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    assert routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": {"Ref": "CanaryTrafficPercent"}}
    assert routing["WaitIntervalInSeconds"] == {"Ref": "CanaryBakeSeconds"}
    alarms = [alarm["AlarmName"]["Ref"] for alarm in config["AutoRollbackConfiguration"]["Alarms"]]
    assert alarms == ["LowConfidenceRateAlarm", "ModelErrorRateAlarm", "ModelLatencyAlarm"]
    for alarm in alarms:
        assert RESOURCES[alarm]["Type"] == "AWS::CloudWatch::Alarm"
        check(resolved(RESOURCES[alarm]["Properties"], {}), "AWS::CloudWatch::Alarm")


def test_the_alarms_thresholds_are_the_local_canarys():
    """The condition `scones deploy --canary` evaluates locally is the one the template's alarms use."""
    assert float(PARAMETERS["LowConfidenceAlarmRate"]["Default"]) == guardrails.LOW_CONFIDENCE_RATE
    assert float(PARAMETERS["ModelErrorAlarmRate"]["Default"]) == guardrails.ERROR_RATE
    assert float(PARAMETERS["ModelLatencyAlarmMicroseconds"]["Default"]) == guardrails.LATENCY_P99_MS * 1000
    error, latency = RESOURCES["ModelErrorRateAlarm"]["Properties"], RESOURCES["ModelLatencyAlarm"]["Properties"]
    assert (error["MetricName"], error["Statistic"]) == ("Invocation5XXErrors", "Average")
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("ModelLatency", "p99")
    low = RESOURCES["LowConfidenceRateAlarm"]["Properties"]
    assert all(p["ComparisonOperator"] == "GreaterThanThreshold" for p in (error, latency, low))


def test_the_shadow_challenger_exists_only_when_asked_for():
    assert RESOURCES["ChallengerModel"]["Condition"] == "ChallengerWanted"
    config = RESOURCES["EndpointConfig"]["Properties"]
    with_challenger = resolved(config, {"ChallengerWanted": True})
    assert [v["VariantName"] for v in with_challenger["ShadowProductionVariants"]] == ["Challenger"]
    assert "ShadowProductionVariants" not in resolved(config, {"ChallengerWanted": False})
    assert PARAMETERS["ChallengerModelDataKey"]["Default"] == ""
