"""Promote what was tested on the emulator to AWS: push the same model image to ECR, upload the same
model.tar.gz and deploy the same template with the SageMaker endpoint on; and a teardown that leaves
nothing billed. The dry run is cloud/plan.py; the image and ECR, cloud/image.py. The command line is
`scones deploy --target aws [--dry-run]` and `scones teardown --target aws`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import WaiterError

from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_STACK_NAME
from cloud.deploy import STACK_SERVICES, deploy_stack, teardown_stack
from cloud.errors import (
    LocalTestRecordError,
    ModelDataMissingError,
    TeardownIncompleteError,
    UntestedArtifactsError,
)
from cloud.image import (
    check_platform,
    default_repository,
    ensure_repository,
    image_in_repository,
    inspect_local_image,
    push_image,
    remove_repository_images,
    verify_pushed_image,
)
from cloud.plan import PromotionConfig, compare_with_test, current_digests
from cloud.stack import stack_resource_id, stack_status

PROMOTION_TIMEOUT_S = 3600.0  # the SageMaker endpoint alone takes 5-15 minutes to create or delete
ENDPOINT_DELETED_POLL_S = 15


@dataclass(frozen=True)
class PromotionResult:
    outputs: dict[str, str]  # the stack's outputs
    image_uri: str  # <registry>/<repository>:sha256-<image id>
    image_digest: str  # the manifest digest ECR holds
    endpoint_name: str
    state_machine_arn: str | None  # None only where the target keeps no stack outputs (moto)

    def summary(self) -> dict:
        return {
            "state_machine_arn": self.state_machine_arn,
            "endpoint_name": self.endpoint_name,
            "image_uri": self.image_uri,
            "image_digest": self.image_digest,
            "outputs": self.outputs,
        }


def promote(config: PromotionConfig, target: AwsTarget, *, allow_untested: bool = False) -> PromotionResult:
    """Push the model image to ECR (tagged with its ID), upload model.tar.gz and deploy the stack with
    the SageMaker endpoint; refuse unless the artifacts are the ones tested locally (`allow_untested`
    overrides). Everything local is checked before the first call that creates anything."""
    config.check()
    target.check(*STACK_SERVICES, "ecr")
    target.require_credentials()
    ecr, progress = target.client("ecr"), target.progress
    if not Path(config.model_data_path).is_file():
        raise ModelDataMissingError(
            f"no model.tar.gz at {config.model_data_path}: run `scones train` (in the same --workdir)"
        )
    image = inspect_local_image(config.local_image)
    check_platform(image, config.instance_type)
    _, digests, _ = current_digests(config, image)
    try:
        comparison = compare_with_test(digests, config.manifest_path)
        if not comparison.identical:
            raise UntestedArtifactsError(comparison.summary() + "\n(--allow-untested promotes them anyway)")
        progress(comparison.summary())
    except (LocalTestRecordError, UntestedArtifactsError) as e:
        if not allow_untested:
            raise
        progress(f"warning: promoting untested artifacts, as asked: {e}")

    target.check_identity()  # fails early, with the fix, on expired credentials
    repository = ensure_repository(ecr, config.repository_name, config.stack_name, progress)
    image_uri = f"{repository['repositoryUri']}:{image.tag}"
    if image_in_repository(ecr, config.repository_name, image.tag):
        progress(f"{image_uri} is in ECR already")
    else:
        progress(f"pushing {config.local_image} ({image.image_id}) to {image_uri}")
        push_image(image, repository["repositoryUri"], ecr.get_authorization_token()["authorizationData"][0])
    digest = verify_pushed_image(ecr, config.repository_name, image.tag, image.image_id)
    progress(f"ECR holds the local image under {image.tag} (manifest {digest})")

    outputs = deploy_stack(config.deploy_config(image.tag), target)
    return PromotionResult(
        outputs=outputs,
        image_uri=image_uri,
        image_digest=digest,
        endpoint_name=outputs.get("ModelEndpointName", config.endpoint_name),
        state_machine_arn=outputs.get("StateMachineArn"),
    )


def teardown_promotion(
    target: AwsTarget,
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    repository: str = "",
    keep_repository: bool = False,
) -> None:
    """Delete everything `promote` created, writers first (deploy.teardown_stack): the SageMaker
    endpoint, endpoint config and model, then the buckets' objects (data capture included), the stack
    and the artifact bucket, then the ECR repository (or, when it is kept or not promote's, the images
    promote pushed). Checks the endpoint is gone. Safe to run twice."""
    target.check(*STACK_SERVICES, "ecr", "sagemaker")
    target.require_credentials()
    cfn, deadline = target.client("cloudformation"), target.deadline()
    endpoint = stack_resource_id(cfn, stack_name, "Endpoint") if stack_status(cfn, stack_name) else None
    teardown_stack(target, stack_name)
    if endpoint:
        # The physical ID is the endpoint's ARN; its name is the last part.
        wait_until_endpoint_deleted(target, endpoint.rsplit("/", 1)[-1], deadline)
    remove_repository_images(
        target.client("ecr"), repository or default_repository(stack_name), stack_name, keep_repository, target.progress
    )


def wait_until_endpoint_deleted(target: AwsTarget, name: str, deadline: float) -> None:
    attempts = max(1, int((deadline - time.monotonic()) // ENDPOINT_DELETED_POLL_S))
    try:
        target.client("sagemaker").get_waiter("endpoint_deleted").wait(
            EndpointName=name, WaiterConfig={"Delay": ENDPOINT_DELETED_POLL_S, "MaxAttempts": attempts}
        )
    except WaiterError as e:
        raise TeardownIncompleteError(
            f"SageMaker endpoint {name} still exists after the stack's deletion ({e}); it is billed by the hour: "
            f"delete it with `aws sagemaker delete-endpoint --endpoint-name {name}`"
        ) from e
    target.progress(f"SageMaker endpoint {name} is gone")
