"""Pointing a test process's AWS clients at an emulator, the way a user's shell does with the `export` line
`scones up` prints. For tests and benchmarks, which are entry points: the library itself never rewrites
os.environ (tests/unit/test_configuration.py), it passes the emulator to its AwsTarget."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from scones.local.emulator import LOCAL_REGION, local_aws_environment


@contextlib.contextmanager
def aws_environment_for(endpoint_url: str) -> Iterator[dict[str, str]]:
    """Point this process's AWS clients at an emulator for the duration of the block: the endpoint,
    dummy credentials, a region (the one set, else LOCAL_REGION); per-service endpoints and profiles
    are removed so that no client can reach AWS. The previous environment is restored after."""
    saved = dict(os.environ)
    removed = [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_") or n in ("AWS_PROFILE", "AWS_SESSION_TOKEN")]
    for name in removed:
        del os.environ[name]
    environment = local_aws_environment(endpoint_url, os.environ.get("AWS_DEFAULT_REGION") or LOCAL_REGION)
    os.environ.update(environment)
    try:
        yield environment
    finally:
        os.environ.clear()
        os.environ.update(saved)
