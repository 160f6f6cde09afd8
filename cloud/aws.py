"""The one place the host side makes AWS clients: `AwsTarget` owns the boto3 session, the clients (one per
service, one retry configuration), the refusal of real AWS unless it was asked for, the identity check (STS,
asked once) and how long and how loudly a stack operation may run. Everything in cloud/ and scones/ that
calls AWS takes one.

For AWS the target comes from the environment, as everywhere in boto3: the region and credentials from the
usual chain. For an emulator it is configured, not read: `AwsTarget.for_emulator(url)` sends every client there
with dummy credentials, whatever the process environment says (no code points boto3 at an emulator by
rewriting os.environ, which threads share). Two other deployables make their own clients because they ship
without this package: the Lambdas (lambdas/clients.py) and the model server (local_model/capture.py).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

from cloud.errors import AwsCredentialsMissingError, AwsRegionMissingError, RealAwsRefusedError

logger = logging.getLogger(__name__)

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
# Emulators accept any credentials; boto3 needs some to sign. Never real ones (a test greps for these).
EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
STACK_TIMEOUT_S = 1800.0  # a stack with a SageMaker endpoint takes 10-20 minutes on AWS
REFUSAL_ADVICE = "point AWS_ENDPOINT_URL at an emulator, or ask for AWS explicitly (--target aws)"
CREDENTIALS_ADVICE = "run `aws configure` (or `aws sso login`), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
CREDENTIALS_ADVICE += "AWS_SECRET_ACCESS_KEY, then run again"


@functools.cache
def _partitions() -> tuple[dict, ...]:
    return tuple(botocore.loaders.create_loader().load_data("partitions")["partitions"])


@functools.cache
def aws_domains() -> tuple[str, ...]:
    """DNS suffixes of real AWS endpoints in every partition botocore knows (amazonaws.com, api.aws,
    amazonaws.com.cn, amazonaws.eu, ...), so that a new partition is refused without a code change."""
    suffixes = {
        partition["outputs"][key]
        for partition in _partitions()
        for key in ("dnsSuffix", "dualStackDnsSuffix")
        if partition["outputs"].get(key)
    }
    return tuple(sorted(f".{suffix}" for suffix in suffixes))


def is_real_aws_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host.endswith(aws_domains())


@dataclass(frozen=True, eq=False)
class AwsTarget:
    """Where and how this process calls AWS. Makes no call until a client is used."""

    session: boto3.Session = field(default_factory=boto3.Session)
    allow_aws: bool = False  # real AWS is refused unless asked for: an emulator costs nothing
    timeout_s: float = STACK_TIMEOUT_S  # how long one stack operation (deploy, teardown) may take
    progress: Callable[[str], None] = logger.info  # a line per step of a long operation
    endpoint_url: str | None = None  # where every client goes (an emulator); None: where boto3's config says
    _clients: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def for_emulator(cls, endpoint_url: str, region: str, **options) -> AwsTarget:
        """A target whose every client goes to the emulator at `endpoint_url`, with its dummy credentials, in
        `region`. Nothing is read from the environment or the AWS config files: no profile, no per-service
        endpoint, no real credentials can take part."""
        core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        core.set_config_variable("config_file", "/dev/null")
        core.set_config_variable("credentials_file", "/dev/null")
        session = boto3.Session(
            aws_access_key_id=EMULATOR_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=EMULATOR_CREDENTIALS["aws_secret_access_key"],
            region_name=region,
            botocore_session=core,
        )
        return cls(session, endpoint_url=endpoint_url, **options)

    @classmethod
    def from_environment(cls, region: str | None = None, **options) -> AwsTarget:
        """A target on a fresh session from the environment, in `region` or the configured one."""
        return cls(boto3.Session(region_name=region) if region else boto3.Session(), **options)

    @property
    def region(self) -> str:
        if not self.session.region_name:
            raise AwsRegionMissingError(
                "no AWS region configured: set AWS_DEFAULT_REGION or a profile's region "
                "(any region works on an emulator)"
            )
        return self.session.region_name

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

    @property
    def dns_suffix(self) -> str:
        """The partition's domain: amazonaws.com, amazonaws.com.cn, ..."""
        return next(p["outputs"]["dnsSuffix"] for p in _partitions() if p["id"] == self.partition)

    def client(self, service: str, endpoint_url: str | None = None):
        """The client for `service` (at `endpoint_url` when given, else where the environment says), made
        once; RealAwsRefusedError if it would reach real AWS unasked."""
        endpoint_url = endpoint_url or self.endpoint_url
        key = (service, endpoint_url)
        if key not in self._clients:
            client = self.session.client(
                service, region_name=self.region, endpoint_url=endpoint_url, config=CLIENT_CONFIG
            )
            if not self.allow_aws and is_real_aws_url(client.meta.endpoint_url):
                raise RealAwsRefusedError(f"refusing to touch real AWS ({client.meta.endpoint_url}): {REFUSAL_ADVICE}")
            self._clients[key] = client
        return self._clients[key]

    def check(self, *services: str) -> AwsTarget:
        """Make the clients for `services` now, so that a refusal comes before any work; no call is made."""
        for service in services:
            self.client(service)
        return self

    @property
    def is_real_aws(self) -> bool:
        return is_real_aws_url(self.client("sts").meta.endpoint_url)

    def require_credentials(self) -> None:
        """AwsCredentialsMissingError unless the session has credentials (no call is made)."""
        if self.session.get_credentials() is None:
            raise AwsCredentialsMissingError(f"no AWS credentials: {CREDENTIALS_ADVICE}")

    @functools.cached_property
    def account_id(self) -> str:
        """The caller's account, from STS (which needs no permission) the first time it is asked for: this is
        the identity check, made once per target."""
        try:
            return self.client("sts").get_caller_identity()["Account"]
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise AwsCredentialsMissingError(f"no AWS credentials ({e}): {CREDENTIALS_ADVICE}") from e
        except ClientError as e:
            code = e.response["Error"]["Code"]
            raise AwsCredentialsMissingError(
                f"the AWS credentials do not work ({code}): refresh them (`aws sso login`, `aws configure`) "
                "and run again"
            ) from e

    def check_identity(self) -> str:
        """Fail now, with the fix, if the credentials are missing or do not work; the caller's account."""
        return self.account_id

    def deadline(self) -> float:
        """The monotonic time by which a stack operation started now must be done."""
        return time.monotonic() + self.timeout_s

    def reporting_to(self, progress: Callable[[str], None]) -> AwsTarget:
        """The same target (its clients and identity too), reporting to `progress`."""
        other = AwsTarget(self.session, self.allow_aws, self.timeout_s, progress, self.endpoint_url)
        object.__setattr__(other, "_clients", self._clients)
        if "account_id" in self.__dict__:
            other.__dict__["account_id"] = self.__dict__["account_id"]
        return other
