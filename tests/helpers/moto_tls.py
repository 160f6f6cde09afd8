"""moto evaluating the buckets' TLS-only policy as AWS does for boto3's https requests; for the unit
tests that deploy to moto (import the fixture into the test module)."""

from __future__ import annotations

import json

import pytest

# The buckets' TLS-only statement: deny everything when the request is not over TLS.
PLAIN_HTTP_ONLY = {"Bool": {"aws:SecureTransport": "false"}}


@pytest.fixture(autouse=True)
def moto_sees_tls(monkeypatch):
    """moto 5.2.5 applies a bucket policy's Deny statements but ignores their Conditions (its
    put_bucket_policy says so), so the buckets' TLS-only Deny would refuse every request. boto3
    reaches moto over https: moto evaluates the policy without the statements that match plain HTTP
    only, as AWS does for an https request (cloud/EMULATORS.md)."""
    from moto.s3.models import FakeBucket

    evaluate = FakeBucket.get_permission

    def get_permission(bucket, action, resource):
        if bucket.policy is None:
            return evaluate(bucket, action, resource)
        policy, saved = json.loads(bucket.policy), bucket.policy
        https = [s for s in policy["Statement"] if s.get("Condition") != PLAIN_HTTP_ONLY]
        bucket.policy = json.dumps({**policy, "Statement": https}).encode() if https else None
        try:
            return evaluate(bucket, action, resource)
        finally:
            bucket.policy = saved

    monkeypatch.setattr(FakeBucket, "get_permission", get_permission)
