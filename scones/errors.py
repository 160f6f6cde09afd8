"""The errors the `scones` command reports, and the exit code of each, so that scripts can tell a failed
step (1) from a usage mistake (2) and from an environment that is not ready (3)."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from cloud.errors import DeployError, RealAwsRefusedError, TargetEnvironmentError
from lambdas.contract import WorkflowError
from local_model.capture import CaptureError
from local_model.data import DataError, DownloadError
from scones.local.emulator import EmulatorError
from scones.local.model_server import ModelServerError, PortInUseError
from scones.local.state_file import CorruptStateError
from scones.workflow.execution import WorkflowRunError

EXIT_OK = 0
EXIT_FAILED = 1  # a step ran and failed: training, deploy, an execution of the workflow
EXIT_USAGE = 2  # the command line is wrong: unknown option, bad --data-dir, bad --set
EXIT_ENVIRONMENT = 3  # something the command needs is missing: emulator, port, credentials, model, deployment
EXIT_REJECTED = 4  # `classify`: the workflow ran and rejected the image as low confidence
EXIT_INTERRUPTED = 130  # Ctrl-C, after cleaning up (128 + SIGINT, as shells report it)


class SconesError(Exception):
    """A command cannot go on; the message says what to do. Subclasses choose the exit code."""

    exit_code = EXIT_FAILED


class StepFailedError(SconesError):
    """A step ran and failed."""


class UsageProblemError(SconesError):
    """The command line asks for something impossible."""

    exit_code = EXIT_USAGE


class EnvironmentProblemError(SconesError):
    """Something the command needs is not there: an emulator, a free port, credentials, a model, a stack."""

    exit_code = EXIT_ENVIRONMENT


class ChildExitedError(EnvironmentProblemError):
    """A process `scones up` (or the demo) started and watches, the emulator or the model server, exited."""


class EmulatorNotRunningError(EnvironmentProblemError):
    """No emulator to talk to: `scones up` is not running and AWS_ENDPOINT_URL is not set."""


class EmulatorUnreachableError(EnvironmentProblemError):
    """An emulator was named (AWS_ENDPOINT_URL or the state file) but does not answer."""


class PortTakenError(EnvironmentProblemError):
    """A port asked for on the command line is in use."""


class AwsCredentialsError(EnvironmentProblemError):
    """`--target aws` without usable AWS credentials or region."""


class NotDeployedError(EnvironmentProblemError):
    """The stack the command needs does not exist on the target."""


class StackLostError(NotDeployedError):
    """The state file records a stack on an emulator that no longer has it: the emulator was restarted
    (emulators keep nothing across a restart)."""


class NoTrainedModelError(EnvironmentProblemError):
    """No model.tar.gz in the workdir yet."""


class NothingStagedError(EnvironmentProblemError):
    """No staged images in the workdir yet."""


class DataDirError(UsageProblemError):
    """--data-dir is not an image folder the pipeline can use."""


def describe_error(error: BaseException) -> tuple[int, str]:
    """(exit code, one-line message with the fix) for any error a command lets through."""
    message = str(error).strip() or type(error).__name__
    if isinstance(error, SconesError):
        return error.exit_code, message
    if isinstance(error, (TargetEnvironmentError, CorruptStateError)):
        return EXIT_ENVIRONMENT, message
    if isinstance(error, DownloadError):  # its message says to use --data-dir offline
        return EXIT_ENVIRONMENT, message
    if isinstance(error, DataError):
        return EXIT_FAILED, message
    if isinstance(error, PortInUseError):
        return EXIT_ENVIRONMENT, f"{message}: choose another port, or leave the port option unset to pick a free one"
    if isinstance(error, EmulatorError):  # the port-taken subclass says what to do itself
        return EXIT_ENVIRONMENT, message
    if isinstance(error, ModelServerError):
        return EXIT_FAILED, message
    if isinstance(error, RealAwsRefusedError):
        return EXIT_ENVIRONMENT, message
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return EXIT_ENVIRONMENT, f"{message}: configure AWS credentials (aws configure, AWS_PROFILE) for --target aws"
    if isinstance(error, NoRegionError):
        return EXIT_ENVIRONMENT, f"{message}: set AWS_DEFAULT_REGION"
    if isinstance(error, EndpointConnectionError):
        return EXIT_ENVIRONMENT, f"{message}: is the emulator (or `scones up`) still running?"
    if isinstance(error, (DeployError, WorkflowRunError, WorkflowError, CaptureError)):
        return EXIT_FAILED, message
    if isinstance(error, (ClientError, BotoCoreError)):
        return EXIT_FAILED, f"AWS API error: {message}"
    raise error
