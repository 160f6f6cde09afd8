"""The AWS clients the handlers use, created once per execution environment and reused.

No endpoint is named here: boto3 reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> itself, so
switching emulator or going to AWS changes the environment, never this code. Clients are built on
first use rather than at import, so that importing a handler needs no AWS configuration.
"""

from __future__ import annotations

import functools
import math

import boto3
from botocore.config import Config

# Standard retry mode backs off with jitter on throttling, 5xx, connection errors and read timeouts.
# Every attempt (connect + read) and the backoff between them must end before the function's own
# Timeout (template.yaml), so that a stuck service fails with a named error instead of the platform
# killing the function: the classifier's 60 s hold 3 x (2 + 16) + 3 = 57 s of endpoint calls, the
# serializer's 30 s hold 3 x (2 + 6) + 3 = 27 s of S3 reads (an image is at most a few MB).
MAX_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 16  # the endpoint's: a model answers in well under a second, a cold container in seconds
S3_READ_TIMEOUT_S = 6
MAX_BACKOFF_S = 3  # standard mode waits at most 1 s, then at most 2 s, between the three attempts
DEADLINE_MARGIN_S = 1  # for the handler's own work after the last attempt
_CONFIG = Config(
    # total_max_attempts counts the first attempt; botocore's max_attempts would count retries only (4 calls).
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
)


@functools.cache
def s3_client():
    return boto3.client("s3", config=_CONFIG.merge(Config(read_timeout=S3_READ_TIMEOUT_S)))


@functools.cache
def sagemaker_runtime_client(read_timeout_s: int = READ_TIMEOUT_S):
    return boto3.client("sagemaker-runtime", config=_CONFIG.merge(Config(read_timeout=read_timeout_s)))


def read_timeout_within(remaining_s: float) -> int:
    """The longest read timeout (whole seconds, 1 to READ_TIMEOUT_S) whose attempts and backoff all end
    within `remaining_s`, the time the function has left (a shorter Timeout than the template's too)."""
    per_attempt = (remaining_s - DEADLINE_MARGIN_S - MAX_BACKOFF_S) / MAX_ATTEMPTS
    return max(1, min(READ_TIMEOUT_S, math.floor(per_attempt - CONNECT_TIMEOUT_S)))


def sagemaker_runtime_client_within(remaining_s: float | None):
    """The SageMaker Runtime client for an invocation with `remaining_s` left (None: outside Lambda)."""
    read_timeout_s = READ_TIMEOUT_S if remaining_s is None else read_timeout_within(remaining_s)
    return sagemaker_runtime_client() if read_timeout_s == READ_TIMEOUT_S else sagemaker_runtime_client(read_timeout_s)
