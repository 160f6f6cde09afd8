"""The errors of cloud/, in one family: every one is a DeployError whose message says why and what to do.
The command line maps TargetEnvironmentError (something missing: region, credentials, Docker, the image, the
model, the local test's record) to its exit code 3, and every other DeployError to 1."""

from __future__ import annotations


class DeployError(RuntimeError):
    """Deploying, promoting or tearing down failed; the message says why and what to do."""


class RealAwsRefusedError(DeployError):
    """The target is real AWS and the caller did not ask for it."""


class StackFailedError(DeployError):
    """CloudFormation could not create, update or delete the stack."""


class DeployTimeoutError(DeployError):
    """The stack did not reach a final state before the deadline."""


class TargetEnvironmentError(DeployError):
    """Something the target needs is missing: a region, credentials, Docker, the image, the model, a record."""


class AwsRegionMissingError(TargetEnvironmentError):
    """No AWS region is configured."""


class AwsCredentialsMissingError(TargetEnvironmentError):
    """No (working) AWS credentials for an AWS target."""


class PromotionError(DeployError):
    """Promotion, its dry run or its teardown cannot go on."""


class PromotionEnvironmentError(TargetEnvironmentError, PromotionError):
    """Something only a promotion needs is missing: Docker, the image, the model, the local test's record."""


class DockerUnavailableError(PromotionEnvironmentError):
    """No docker CLI, or no daemon behind it."""


class LocalImageMissingError(PromotionEnvironmentError):
    """The model image to push is not in the local Docker image store."""


class ModelDataMissingError(PromotionEnvironmentError):
    """There is no model.tar.gz where promotion looks for it."""


class LocalTestRecordError(PromotionEnvironmentError):
    """No usable record of a local test to compare the artifacts with."""


class UntestedArtifactsError(PromotionError):
    """The artifacts differ from the ones tested locally."""


class DockerCommandError(PromotionError):
    """A docker command failed."""


class ImagePlatformError(PromotionError):
    """The image's platform is not the endpoint instance's."""


class ImageVerificationError(PromotionError):
    """What ECR holds under the tag is not the local image, or not an image SageMaker can run."""


class TeardownIncompleteError(PromotionError):
    """Something billable is still there after the teardown."""


class SourceTreeError(DeployError):
    """The folder given as the sources (--source-dir) is not laid out as the repository."""
