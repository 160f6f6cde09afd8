"""Where the command line's AWS calls go: the embedded emulator (ministack, started here), the emulator
AWS_ENDPOINT_URL names (LocalStack from docker compose, say), the one a running `scones up` recorded in
the state file, or, only when asked with `--target aws`, AWS itself.

Nothing here names an endpoint in code, and nothing rewrites the process environment: the connection's
AwsTarget (cloud/aws.py) is configured with the emulator's URL and makes every client the command uses;
children that call AWS (the model server's captures) get the same settings in an environment of their own
(`Connection.child_environment`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError

from cloud.aws import AwsTarget, is_real_aws_url
from cloud.defaults import DEFAULT_STACK_NAME
from cloud.errors import AwsCredentialsMissingError, AwsRegionMissingError, RealAwsRefusedError
from cloud.promote import PROMOTION_TIMEOUT_S
from cloud.stack import stack_outputs, stack_status
from scones.errors import (
    AwsCredentialsError,
    EmulatorNotRunningError,
    EmulatorUnreachableError,
    NotDeployedError,
    StackLostError,
)
from scones.local.emulator import LOCAL_REGION, Ministack, is_reachable, local_aws_environment
from scones.local.state_file import SessionState

ENDPOINT_URL_VAR = "AWS_ENDPOINT_URL"
EMULATOR_STACK_TIMEOUT_S = 600.0  # an emulator deploys in seconds; on AWS the endpoint alone takes minutes


class TargetKind(StrEnum):
    emulator = "emulator"
    aws = "aws"


@dataclass(frozen=True)
class Connection:
    """Where this command's AWS calls go, and the AwsTarget that makes its clients."""

    kind: TargetKind
    endpoint_url: str | None  # the emulator's URL; None on AWS
    embedded: bool  # this process started the emulator and stops it on exit
    aws: AwsTarget  # every client the command makes, made by this
    emulator: Ministack | None = None  # the embedded emulator's process, when this process started it

    @property
    def allow_aws(self) -> bool:
        return self.kind is TargetKind.aws

    def child_environment(self) -> dict[str, str]:
        """The variables a child process needs to reach the same emulator (endpoint, region, dummy
        credentials); empty on AWS, where a child finds its own credentials."""
        if self.kind is TargetKind.aws or self.endpoint_url is None:
            return {}
        return local_aws_environment(self.endpoint_url, self.aws.region)

    def describe(self) -> str:
        if self.kind is TargetKind.aws:
            return f"AWS ({self.aws.region})"
        origin = "embedded ministack" if self.embedded else "emulator"
        return f"{origin} at {self.endpoint_url}"


def configured_emulator(environ: Mapping[str, str] | None = None) -> str | None:
    """The emulator AWS_ENDPOINT_URL names, if any."""
    environ = os.environ if environ is None else environ
    return environ.get(ENDPOINT_URL_VAR, "").strip() or None


def check_reachable(url: str, named_by: str) -> None:
    if not is_reachable(url):
        if named_by == ENDPOINT_URL_VAR:
            fix = f"start the emulator there, or unset {ENDPOINT_URL_VAR} to use the embedded one"
        else:
            fix = "it has stopped: start `scones up` again, or run `scones teardown` to forget it"
        raise EmulatorUnreachableError(f"the emulator at {url} ({named_by}) does not answer: {fix}")


@contextlib.contextmanager
def connect(
    kind: TargetKind = TargetKind.emulator,
    state: SessionState | None = None,
    *,
    start_embedded: bool = False,
    emulator_port: int | None = None,
) -> Iterator[Connection]:
    """Point this process at the target for the duration of the block.

    Emulator, in this order: AWS_ENDPOINT_URL; with `start_embedded` (demo, up) a fresh embedded ministack,
    stopped on exit; else the emulator recorded in the state file (by `scones up`, or by `deploy` on the
    emulator AWS_ENDPOINT_URL named then); else EmulatorNotRunningError.
    """
    if kind is TargetKind.aws:
        yield Connection(kind, None, False, aws_target())
        return
    url = configured_emulator()
    if url:
        if is_real_aws_url(url):
            raise RealAwsRefusedError(f"{ENDPOINT_URL_VAR} names real AWS ({url}), not an emulator: use --target aws")
        check_reachable(url, ENDPOINT_URL_VAR)
        yield Connection(kind, url, False, emulator_target(url))
        return
    if state is not None and state.aws_endpoint_url and not start_embedded:
        check_reachable(state.aws_endpoint_url, "recorded in the state file")
        yield Connection(kind, state.aws_endpoint_url, False, emulator_target(state.aws_endpoint_url))
        return
    if not start_embedded:
        raise EmulatorNotRunningError(
            "no emulator is running: start one with `scones up` in another terminal (same directory or "
            f"--workdir), or point {ENDPOINT_URL_VAR} at one (LocalStack: http://127.0.0.1:4566)"
        )
    with Ministack(port=emulator_port) as emulator:
        yield Connection(kind, emulator.endpoint_url, True, emulator_target(emulator.endpoint_url), emulator)


def emulator_target(endpoint_url: str, environ: Mapping[str, str] | None = None) -> AwsTarget:
    """The target for the emulator at `endpoint_url` (real AWS stays refused), in the configured region
    (AWS_DEFAULT_REGION, else LOCAL_REGION: any region works on an emulator)."""
    environ = os.environ if environ is None else environ
    region = environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or LOCAL_REGION
    return AwsTarget.for_emulator(endpoint_url, region, timeout_s=EMULATOR_STACK_TIMEOUT_S)


def aws_target() -> AwsTarget:
    """A target on real AWS whose credentials work: checked with STS (which needs no permission), once, here;
    whatever the command does next reuses the answer."""
    target = AwsTarget.from_environment(allow_aws=True, timeout_s=PROMOTION_TIMEOUT_S)
    try:
        target.check_identity()
    except AwsRegionMissingError as e:  # AwsTarget.region's check, said the way --target aws needs it
        raise AwsCredentialsError("--target aws needs a region: set AWS_DEFAULT_REGION (or a profile's region)") from e
    except AwsCredentialsMissingError as e:
        raise AwsCredentialsError(f"--target aws: {e}") from e
    except (ClientError, BotoCoreError) as e:
        raise AwsCredentialsError(f"the AWS credentials do not work for --target aws: {e}") from e
    return target


def deployed_outputs(connection: Connection, stack_name: str | None, state: SessionState | None) -> dict[str, str]:
    """The outputs of the stack the command works on; NotDeployedError with the fix if there is none."""
    name = stack_name or (state.stack_name if state else None) or DEFAULT_STACK_NAME
    cfn = connection.aws.client("cloudformation")
    status = stack_status(cfn, name)
    if status is None or status.startswith("DELETE"):
        recorded = (state.stack_name, state.aws_endpoint_url) if state is not None else None
        if connection.kind is TargetKind.emulator and recorded == (name, connection.endpoint_url):
            raise StackLostError(
                f"stack {name!r} is recorded in the state file as deployed on {connection.describe()}, which has "
                "no such stack: the emulator was restarted and lost it. Deploy it again with `scones deploy` "
                "(or stop `scones up` and start it again)"
            )
        raise NotDeployedError(
            f"stack {name!r} is not deployed on {connection.describe()}: run `scones deploy` (or `scones up`)"
        )
    if status.endswith("_FAILED") or status == "ROLLBACK_COMPLETE":
        raise NotDeployedError(f"stack {name!r} is {status} on {connection.describe()}: run `scones deploy` again")
    return stack_outputs(connection.aws, name)
