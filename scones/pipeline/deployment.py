"""Deploy the model endpoint and the stack. Off AWS the endpoint is the local model server: it gets a port,
the stack is deployed with that URL as the classifier's AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, then the server
starts with data capture into the stack's bucket (which exists only once the stack does); the artifacts'
hashes are recorded in WORKDIR/artifacts.json. On AWS, cloud/promote.py pushes the serving image to ECR and
deploys the same template with the SageMaker endpoint, refusing artifacts that differ from the recorded ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cloud.artifacts import REPOSITORY, SourceTree
from cloud.aws import AwsTarget
from cloud.defaults import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_LOCAL_IMAGE,
)
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from cloud.image import inspect_local_image
from cloud.manifest import MANIFEST_NAME
from cloud.plan import PromotionConfig, format_plan, plan_promotion
from cloud.promote import promote, teardown_promotion
from local_model.artifact import META_FILE
from local_model.settings import VARIANTS_FILE_VAR
from scones.errors import StepFailedError
from scones.local.connection import Connection
from scones.local.model_server import ModelServer, reload_served_model
from scones.local.state_file import SessionState
from scones.local.supervisor import free_port
from scones.pipeline import registry, rollout
from scones.pipeline.steps import ModelPaths, model_paths, sha256_of

CAPTURE_PREFIX = "data-capture"  # where SageMaker captures on AWS too (template: DataCaptureConfig)


@dataclass(frozen=True)
class DeployOptions:
    stack_name: str
    endpoint_name: str = DEFAULT_ENDPOINT_NAME
    threshold: float | None = None  # None: the one training chose (model.json), else the default
    model_port: int | None = None  # None: a free port
    model_url: str | None = None  # an existing model server (docker compose: http://model:8080); none started
    model_image: str | None = None  # the local image that server runs: its ID is recorded for the promotion
    # --target aws (cloud/promote.py): the local serving image pushed to ECR, the endpoint's instance type
    local_image: str = DEFAULT_LOCAL_IMAGE
    repository: str = ""  # ECR repository; empty: <stack>-model
    instance_type: str = DEFAULT_INSTANCE_TYPE
    allow_untested: bool = False  # promote artifacts that differ from the ones deployed to the emulator
    sources: SourceTree = REPOSITORY  # where the template, handlers and state machines are read from


class ModelThresholdError(StepFailedError):
    """model.json is unreadable or its confidence threshold is not a probability."""


@dataclass(frozen=True)
class ChosenThreshold:
    value: float
    source: str  # where it came from, for the deploy progress and the report


@dataclass
class Deployment:
    outputs: dict[str, str]
    model_server: ModelServer | None  # started here (off AWS, without model_url); the caller stops it
    model_server_url: str | None
    capture_destination: str | None
    threshold: ChosenThreshold | None = None


# What the images a threshold was chosen on were, by model.json's confidence_threshold.source.
HELD_OUT_IMAGES = {
    "validation": "validation images",
    "out-of-fold": "out-of-fold training images",
    "cross-fitted recipe": "out-of-fold images of the cross-fitted recipe",
}


def resolve_threshold(override: float | None, model_dir: Path | None) -> ChosenThreshold:
    """The stack's confidence threshold: `override` (--threshold) when given, else the one training chose on
    its validation split (model.json), else DEFAULT_CONFIDENCE_THRESHOLD, saying why."""
    if override is not None:
        return ChosenThreshold(float(override), "--threshold")
    meta_path = Path(model_dir) / META_FILE if model_dir is not None else None
    if meta_path is None or not meta_path.is_file():
        return ChosenThreshold(DEFAULT_CONFIDENCE_THRESHOLD, f"default: no {META_FILE} at {meta_path}")
    try:
        chosen = json.loads(meta_path.read_text()).get("confidence_threshold") or {}
    except (OSError, ValueError, AttributeError) as e:
        raise ModelThresholdError(f"{meta_path} is not a readable model description: {e}") from e
    if not chosen:
        return ChosenThreshold(DEFAULT_CONFIDENCE_THRESHOLD, f"default: {meta_path} has no chosen threshold")
    value = chosen.get("value")
    if value is None:
        reason = chosen.get("reason", "training chose none")
        return ChosenThreshold(DEFAULT_CONFIDENCE_THRESHOLD, f"fallback default: {reason}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ModelThresholdError(f"{meta_path}: confidence_threshold.value {value!r} is not a probability in [0, 1]")
    source = (
        f"{META_FILE}: routed precision {chosen['precision']:.3f} at coverage {chosen['coverage']:.0%} on "
        f"{chosen['n_images']} {HELD_OUT_IMAGES.get(chosen.get('source', 'validation'), 'held-out images')} "
        f"(target {chosen['target_precision']})"
    )
    return ChosenThreshold(float(value), source)


def manifest_path(workdir: Path) -> Path:
    """The record of the artifacts deployed to the emulator, which a promotion to AWS checks against."""
    return Path(workdir) / MANIFEST_NAME


def capture_destination(outputs: dict[str, str]) -> str:
    return f"s3://{outputs['ImageBucketName']}/{CAPTURE_PREFIX}"


def deploy_to_emulator(
    connection: Connection,
    options: DeployOptions,
    model: ModelPaths | None,
    workdir: Path,
    progress: Callable[[str], None],
) -> Deployment:
    """Deploy the stack pointing at a model server, and start that server for `model` (unless `model_url`
    names one), recording the artifacts' hashes for a later promotion. The server started here is returned
    running; if it cannot start, nothing is left running (the stack stays, for `teardown`)."""
    url = options.model_url or f"http://127.0.0.1:{options.model_port or free_port()}"
    has_tarball = model is not None and model.tarball.is_file()
    threshold = resolve_threshold(options.threshold, model.model_dir if model is not None else None)
    progress(f"confidence threshold {threshold.value} ({threshold.source})")
    config = DeployConfig(
        stack_name=options.stack_name,
        model_endpoint_name=options.endpoint_name,
        model_endpoint_url=url,
        confidence_threshold=threshold.value,
        model_data_path=model.tarball if has_tarball else None,  # recorded in the manifest, not uploaded
        sources=options.sources,
    )
    image_id = inspect_local_image(options.model_image).image_id if options.model_image else None
    if image_id:
        progress(f"the model server runs {options.model_image} ({image_id}): recorded with the artifacts")
    target = connection.aws.reporting_to(progress)
    outputs = deploy_stack(config, target, manifest_path=manifest_path(workdir), model_image_id=image_id)
    if has_tarball:  # what serves is the champion (scones/pipeline/registry.py)
        version = registry.register_model(workdir, model.tarball, source="deploy")
        registry.set_alias(workdir, "champion", version.id)
        progress(f"model version {version.short_id} is the champion")
    if options.model_url:
        return Deployment(outputs, None, url, None, threshold)
    destination = capture_destination(outputs)
    # A fresh endpoint: one AllTraffic variant; `scones deploy --model/--canary` and `scones shadow` add others.
    variants_file = rollout.variants_path(workdir)
    variants_file.unlink(missing_ok=True)
    server = ModelServer(
        model.model_dir,
        port=int(url.rsplit(":", 1)[1]),
        capture_destination=destination,
        endpoint_name=options.endpoint_name,
        log_path=Path(workdir) / "logs" / "model-server.log",
        # its captures go to the emulator's bucket
        env={**connection.child_environment(), VARIANTS_FILE_VAR: str(variants_file)},
    )
    progress(f"starting the model server on {url} (log {server.log_path}); captures go to {destination}")
    server.start()
    return Deployment(outputs, server, url, destination, threshold)


def redeploy_into_session(
    connection: Connection,
    options: DeployOptions,
    model: ModelPaths,
    workdir: Path,
    session: SessionState,
    progress: Callable[[str], None],
) -> SessionState:
    """`scones deploy` while `scones up` runs: update the stack `up` owns, pointing at `up`'s own model server,
    which is neither replaced nor restarted: when the model changed it reloads it in place (SIGHUP; it answers
    every request meanwhile) and `up` goes on supervising the same process. The session's new state."""
    if not session.model_server_url or not session.model_server_pid:
        raise StepFailedError(
            f"`scones up` (pid {session.owner_pid}) records no model server of its own in {workdir}; stop it and "
            "start it again"
        )
    deployment = deploy_to_emulator(
        connection, replace(options, model_url=session.model_server_url), model, workdir, progress
    )
    sha256 = sha256_of(model.tarball)
    variants_file = rollout.variants_path(workdir)
    if variants_file.exists():  # a deploy serves the trained model alone, as AllTraffic: variants go
        variants_file.unlink()
        progress("the endpoint's variants (canary, shadow) are removed: the model serves all traffic as AllTraffic")
        version = reload_served_model(session.model_server_url, session.model_server_pid)
        progress(f"the model server serves it (model version {version}); same process, same URL")
    elif sha256 != session.model_sha256:
        progress(f"the model changed (sha256 {sha256[:12]}): {session.model_server_url} reloads it in place")
        version = reload_served_model(session.model_server_url, session.model_server_pid)
        progress(f"the model server serves it (model version {version}); same process, same URL")
    else:
        progress(f"the model is unchanged: {session.model_server_url} keeps serving it")
    return replace(session, outputs=deployment.outputs, model_sha256=sha256)


def promotion_config(options: DeployOptions, workdir: Path, threshold: ChosenThreshold) -> PromotionConfig:
    return PromotionConfig(
        stack_name=options.stack_name,
        model_data_path=model_paths(workdir).tarball,
        local_image=options.local_image,
        repository=options.repository,
        endpoint_name=options.endpoint_name,
        instance_type=options.instance_type,
        confidence_threshold=threshold.value,
        manifest_path=manifest_path(workdir),
    )


def plan_aws(options: DeployOptions, workdir: Path, lookup: bool = False) -> tuple[str, bool]:
    """The dry run of a promotion: (what would be created and the artifacts' hashes, whether they are
    the ones deployed to the emulator). No AWS call unless `lookup` (read-only ones then)."""
    target = AwsTarget.from_environment(allow_aws=True)
    threshold = resolve_threshold(options.threshold, model_paths(workdir).model_dir)
    plan = plan_promotion(promotion_config(options, workdir, threshold), target, lookup=lookup)
    return format_plan(plan), plan.proven


def deploy_to_aws(
    connection: Connection, options: DeployOptions, workdir: Path, progress: Callable[[str], None]
) -> Deployment:
    """Promote (cloud/promote.py): the serving image to ECR, the same model.tar.gz, the same template with
    the SageMaker endpoint, refused unless these are the artifacts deployed to the emulator."""
    threshold = resolve_threshold(options.threshold, model_paths(workdir).model_dir)
    progress(f"confidence threshold {threshold.value} ({threshold.source})")
    target = connection.aws.reporting_to(progress)
    config = promotion_config(options, workdir, threshold)
    result = promote(config, target, allow_untested=options.allow_untested)
    # moto keeps no outputs after a change set; AWS always has ImageBucketName.
    destination = capture_destination(result.outputs) if "ImageBucketName" in result.outputs else None
    return Deployment(result.outputs, None, None, destination, threshold)


def remove_stack(
    connection: Connection,
    stack_name: str,
    progress: Callable[[str], None],
    repository: str = "",
    keep_repository: bool = False,
) -> None:
    """Delete the stack and its buckets; on AWS also the SageMaker endpoint (checked) and the pushed images
    (the ECR repository too, unless `keep_repository`)."""
    target = connection.aws.reporting_to(progress)
    if connection.allow_aws:
        teardown_promotion(target, stack_name, repository=repository, keep_repository=keep_repository)
        return
    teardown_stack(target, stack_name)
