"""Security properties of cloud/template.yaml and of the artifact bucket deploy creates: TLS-only
buckets, the SageMaker model in network isolation, reserved concurrency for the classifier. Static
(moto's CloudFormation has no AWS::S3::BucketPolicy and drops EnableNetworkIsolation); the deployed
values are checked on moto in test_deploy.py. No network."""

from __future__ import annotations

import json

import pytest
from cfnlint.decode import decode_str

from cloud import deploy
from cloud.artifacts import TEMPLATE_PATH
from cloud.errors import DeployError
from local_model import settings as model_settings

TEMPLATE = decode_str(TEMPLATE_PATH.read_text())[0]
RESOURCES = TEMPLATE["Resources"]
PLAIN_HTTP_ONLY = {"Bool": {"aws:SecureTransport": "false"}}


def of_type(resource_type: str) -> dict[str, dict]:
    return {k: r for k, r in RESOURCES.items() if r["Type"] == resource_type}


def test_every_bucket_in_the_template_denies_plain_http():
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
        for p in of_type("AWS::S3::BucketPolicy").values()
    }
    assert set(policies) == set(of_type("AWS::S3::Bucket"))
    for bucket, document in policies.items():
        (statement,) = document["Statement"]
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
        assert statement["Condition"] == PLAIN_HTTP_ONLY
        assert statement["Resource"] == [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]


def test_bucket_policies_only_deny():
    """An Allow in a bucket policy would grant beside the roles' least-privilege policies."""
    for policy in of_type("AWS::S3::BucketPolicy").values():
        assert {s["Effect"] for s in policy["Properties"]["PolicyDocument"]["Statement"]} == {"Deny"}


def test_the_artifact_bucket_gets_the_same_tls_only_statement():
    (statement,) = json.loads(deploy.tls_only_policy("b", "aws-cn"))["Statement"]
    (template_statement,) = RESOURCES["ImageBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {k: v for k, v in statement.items() if k != "Resource"} == {
        k: v for k, v in template_statement.items() if k != "Resource"
    }
    assert statement["Resource"] == ["arn:aws-cn:s3:::b", "arn:aws-cn:s3:::b/*"]


def test_the_model_container_runs_without_network():
    model = RESOURCES["Model"]["Properties"]
    assert model["EnableNetworkIsolation"] is True
    assert "VpcConfig" not in model
    # SageMaker writes the data capture itself: the container's own capture writer (which would need
    # the network to reach S3) must stay off, and the container gets no environment at all.
    container = model["PrimaryContainer"]
    assert "Environment" not in container
    assert model_settings.CAPTURE_DESTINATION_VAR not in json.dumps(TEMPLATE)


def test_the_classifier_has_reserved_concurrency_from_a_parameter():
    parameter = TEMPLATE["Parameters"]["ClassifyImageReservedConcurrency"]
    assert parameter["Type"] == "Number"
    assert int(parameter["Default"]) == deploy.DeployConfig().classifier_reserved_concurrency > 0
    assert parameter["MinValue"] == 0
    reserved = RESOURCES["ClassifyImageFunction"]["Properties"]["ReservedConcurrentExecutions"]
    condition, value, otherwise = reserved["Fn::If"]
    assert value == {"Ref": "ClassifyImageReservedConcurrency"}
    assert otherwise == {"Ref": "AWS::NoValue"}  # 0 reserves nothing (Lambda would read 0 as "disabled")
    assert TEMPLATE["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ClassifyImageReservedConcurrency"}, 0]}]
    }
    others = [
        k for k, f in of_type("AWS::Lambda::Function").items() if "ReservedConcurrentExecutions" in f["Properties"]
    ]
    assert others == ["ClassifyImageFunction"]  # the others are short and bounded by the classifier


def test_a_negative_reservation_is_refused_before_any_call():
    with pytest.raises(DeployError, match="0 reserves none"):
        deploy.DeployConfig(classifier_reserved_concurrency=-1).check()
