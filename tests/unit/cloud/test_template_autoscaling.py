"""The endpoint's autoscaling in cloud/template.yaml: an Application Auto Scaling target on the endpoint's
variant and a target-tracking policy on invocations per instance, behind the endpoint's condition.

moto's CloudFormation does not create AWS::ApplicationAutoScaling resources (it skips them with a warning:
the full-stack deploy in test_deploy.py still succeeds with them in the template), so the template's
properties, resolved as CloudFormation would with the defaults, are sent to moto's Application Auto
Scaling API, which checks them as the service does (names, dimension, metric type). No network."""

from __future__ import annotations

import re

import boto3
import pytest
from cfnlint.decode import decode_str
from moto import mock_aws

from cloud.artifacts import TEMPLATE_PATH

TEMPLATE = decode_str(TEMPLATE_PATH.read_text())[0]
RESOURCES = TEMPLATE["Resources"]
TARGET, POLICY = RESOURCES["EndpointScalableTarget"], RESOURCES["EndpointScalingPolicy"]
ENDPOINT_NAME = "scones-classifier"


def resolve(value):
    """Ref to a parameter (its default) and Sub of parameters and the endpoint's name, as CloudFormation."""
    if isinstance(value, dict) and "Ref" in value:
        parameter = TEMPLATE["Parameters"].get(value["Ref"])
        return parameter["Default"] if parameter else value  # a resource's Ref: the API call names it itself
    if isinstance(value, dict) and "Fn::Sub" in value:
        names = {"Endpoint.EndpointName": ENDPOINT_NAME, "ModelEndpointName": ENDPOINT_NAME}
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    return value


def test_autoscaling_exists_only_with_the_endpoint():
    assert TARGET["Condition"] == POLICY["Condition"] == RESOURCES["Endpoint"]["Condition"] == "ModelEndpointWanted"


def test_the_target_is_the_endpoints_variant_and_the_policy_tracks_invocations_per_instance():
    properties = TARGET["Properties"]
    assert properties["ResourceId"] == {"Fn::Sub": "endpoint/${Endpoint.EndpointName}/variant/AllTraffic"}
    (variant,) = RESOURCES["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    # The endpoint starts with as many instances as autoscaling may scale it in to.
    assert variant["InitialInstanceCount"] == properties["MinCapacity"] == {"Ref": "EndpointMinInstances"}
    tracking = POLICY["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert POLICY["Properties"]["ScalingTargetId"] == {"Ref": "EndpointScalableTarget"}
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert int(resolve(properties["MinCapacity"])) <= int(resolve(properties["MaxCapacity"]))


@pytest.fixture
def autoscaling(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("application-autoscaling", aws_access_key_id="x", aws_secret_access_key="x")


def test_the_resolved_target_and_policy_are_accepted_by_the_autoscaling_api(autoscaling):
    target = resolve(TARGET["Properties"])
    autoscaling.register_scalable_target(
        ServiceNamespace=target["ServiceNamespace"],
        ResourceId=target["ResourceId"],
        ScalableDimension=target["ScalableDimension"],
        MinCapacity=int(target["MinCapacity"]),
        MaxCapacity=int(target["MaxCapacity"]),
    )
    policy = resolve(POLICY["Properties"])
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    autoscaling.put_scaling_policy(
        PolicyName=policy["PolicyName"],
        ServiceNamespace=target["ServiceNamespace"],
        ResourceId=target["ResourceId"],
        ScalableDimension=target["ScalableDimension"],
        PolicyType=policy["PolicyType"],
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(tracking["TargetValue"]),
            "PredefinedMetricSpecification": tracking["PredefinedMetricSpecification"],
            "ScaleOutCooldown": int(tracking["ScaleOutCooldown"]),
            "ScaleInCooldown": int(tracking["ScaleInCooldown"]),
        },
    )
    (registered,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert registered["ResourceId"] == f"endpoint/{ENDPOINT_NAME}/variant/AllTraffic"
    assert (registered["MinCapacity"], registered["MaxCapacity"]) == (1, 4)
    (stored,) = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert stored["PolicyName"] == f"{ENDPOINT_NAME}-invocations-per-instance"
    assert stored["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 6000.0
