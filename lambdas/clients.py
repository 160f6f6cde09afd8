"""The AWS clients the handlers use, created once per execution environment and reused.

No endpoint is named here: boto3 reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> itself, so
switching emulator or going to AWS changes the environment, never this code. Clients are built on
first use rather than at import, so that importing a handler needs no AWS configuration.
"""

from __future__ import annotations

import functools

import boto3
from botocore.config import Config

# Standard retry mode backs off with jitter on throttling, 5xx and connection errors. Timeouts stay
# well inside the functions' own timeouts (template.yaml) so a stuck call fails with a named error.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=20,
)


@functools.cache
def s3_client():
    return boto3.client("s3", config=_CONFIG)


@functools.cache
def sagemaker_runtime_client():
    return boto3.client("sagemaker-runtime", config=_CONFIG)
