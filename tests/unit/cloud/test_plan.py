"""The dry run of a promotion (cloud/plan.py) and its proof against the local test's manifest (cloud/manifest.py),
through `scones deploy --target aws --dry-run`. No network, no Docker daemon, no AWS account."""

from __future__ import annotations

import hashlib
import json
import shutil
from types import SimpleNamespace

import boto3
import pytest
import yaml
from cfnlint.decode import decode_str
from moto import mock_aws

from cloud import artifacts, deploy, manifest
from cloud.artifacts import LAMBDAS_DIR, TEMPLATE_PATH, artifact_digests, build_artifacts, build_lambda_zip
from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_LOCAL_IMAGE, DEFAULT_STACK_NAME, DEFAULT_WORKDIR
from cloud.errors import (
    DeployError,
)
from cloud.image import (
    default_repository,
)
from cloud.plan import (
    DEFAULT_MODEL_PATH,
    PromotionConfig,
    TemplateResource,
    endpoint_condition,
    plan_promotion,
    template_resources,
)
from scones.pipeline.deployment import DeployOptions, deploy_to_emulator
from scones.pipeline.steps import model_paths
from tests.helpers.moto_tls import moto_sees_tls  # noqa: F401 (an autouse fixture)
from tests.helpers.promotion_helpers import (
    EMULATOR,
    IMAGE_ID,
    ROOT,
    config_for,
    dry_run_args,
    moto_target,
    record_local_test,
    run_cli,
)

pytestmark = pytest.mark.usefixtures("promotion_aws")


# --- Dry run -----------------------------------------------------------------------------------


def test_dry_run_with_the_tested_artifacts_says_identical_and_lists_what_would_be_created(
    docker, model, tmp_path, no_network
):
    config = config_for(model, tmp_path)
    record_local_test(config, IMAGE_ID)
    code, out, _ = run_cli(dry_run_args(config, "--instance-type", "ml.c5.xlarge"))
    assert code == 0, out
    assert "identical to the artifacts tested locally on http://127.0.0.1:4566 (stack scones-promo" in out
    for expected in (
        "stack            scones-promo",
        "Endpoint                     AWS::SageMaker::Endpoint  (AWS only: ",
        "StateMachine                 AWS::StepFunctions::StateMachine",
        "name             scones-image-classifier",
        "1 x ml.c5.xlarge (linux/amd64)",
        "/scones-promo-model (created if missing: immutable tags, scan on push)",
        f"scones-model:latest -> tag sha256-{IMAGE_ID.removeprefix('sha256:')}",
        f"artifacts/model/{hashlib.sha256(model.read_bytes()).hexdigest()}.tar.gz",
        f"model image ID                 {IMAGE_ID}  [same as tested]",
    ):
        assert expected in out
    for name, artifact in build_artifacts(model).items():
        assert f"  {artifact.key}" in out, name  # every S3 key
        assert f"{artifact.filename:<30} {artifact.sha256}  [same as tested]" in out  # every sha256
    # every uploaded artifact (4 zips, 2 ASL files, model), the template, image inputs, image ID
    assert out.count("same as tested") == len(build_artifacts(model)) + 3 == 10
    inspect = ["image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", "scones-model:latest"]
    assert docker.argvs() == [inspect]


def test_dry_run_names_a_changed_model_and_fails(docker, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config)
    tested = hashlib.sha256(model.read_bytes()).hexdigest()
    model.write_bytes(b"model bytes, retrained after the test")
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 1
    now = hashlib.sha256(model.read_bytes()).hexdigest()
    assert f"NOT the artifacts tested locally on {EMULATOR}" in out
    assert f"  - model.tar.gz differs: tested {tested}, now {now}" in out
    assert "classify_image.zip differs" not in out
    assert run_cli([*dry_run_args(config), "--allow-untested"])[0] == 0  # told otherwise


def test_dry_run_names_a_changed_lambda_zip_and_fails(docker, model, tmp_path, monkeypatch):
    config = config_for(model, tmp_path)
    record_local_test(config)
    edited = tmp_path / "lambdas"
    shutil.copytree(LAMBDAS_DIR, edited, ignore=shutil.ignore_patterns("__pycache__"))
    source = edited / "classify_image.py"
    source.write_text(source.read_text() + "\n# edited after the local test\n")
    build = build_lambda_zip
    monkeypatch.setattr(artifacts, "build_lambda_zip", lambda handler, lambdas_dir=None: build(handler, edited))
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 1
    (difference,) = [line for line in out.splitlines() if line.startswith("  - ")]
    assert difference.startswith("  - classify_image.zip differs: tested ")


def test_dry_run_works_with_no_credentials_no_docker_and_no_network(
    no_docker, model, tmp_path, monkeypatch, no_network
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert boto3.Session().get_credentials() is None
    config = config_for(model, tmp_path)
    record_local_test(config)  # the embedded journey: no image was part of the test
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 0, out
    assert "model image ID                 cannot be determined here" in out
    assert "(the docker CLI is not on PATH" in out
    assert "identical to the artifacts tested locally" in out
    # --lookup without credentials still prints the plan; it says why it looked nothing up.
    code, out, _ = run_cli([*dry_run_args(config), "--lookup"])
    assert code == 0
    assert "lookup           skipped: no AWS credentials: run `aws configure`" in out


def test_dry_run_checks_the_image_id_when_the_local_test_recorded_one(docker, model, tmp_path, monkeypatch):
    config = config_for(model, tmp_path)
    record_local_test(config, IMAGE_ID)  # the docker compose journey served the model from the image
    monkeypatch.setenv("FAKE_DOCKER_IMAGE_ID", "sha256:" + "e" * 64)  # rebuilt since
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 1
    assert f"  - model image ID differs: tested {IMAGE_ID}, now sha256:{'e' * 64}" in out
    # Without a daemon the recorded ID cannot be checked here; the promotion itself checks it.
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "daemon")
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 0
    assert "cannot be checked here" in out and "(no Docker daemon (Cannot connect" in out


def test_dry_run_without_a_record_of_a_local_test_fails_with_the_fix(no_docker, model, tmp_path):
    config = config_for(model, tmp_path)
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 1
    assert f"NOT proven to be the tested artifacts: no record of a local test at {config.manifest_path}" in out
    assert "deploy to the emulator first (`scones up`" in out.splitlines()[-1]


def test_a_record_of_a_deployment_to_aws_is_no_local_test(no_docker, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config, target="https://cloudformation.eu-west-1.amazonaws.com")
    code, out, _ = run_cli(dry_run_args(config))
    assert code == 1
    assert "records a deployment to AWS" in out


def test_an_artifact_the_local_test_did_not_record_is_not_proven(no_docker, model, tmp_path):
    config = config_for(model, tmp_path)
    artifacts = build_artifacts()  # a local deploy that was not given the model
    record = manifest.Manifest(artifact_digests(artifacts), EMULATOR, config.stack_name, "us-east-1")
    manifest.write_manifest(config.manifest_path, record)
    plan = plan_promotion(config, AwsTarget())
    assert not plan.proven
    assert plan.comparison.differences == [
        f"model.tar.gz was not recorded by the local test (now {hashlib.sha256(model.read_bytes()).hexdigest()})"
    ]


def test_dry_run_lookup_reads_the_account_and_what_exists(docker, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config)
    with mock_aws():
        account = boto3.client("sts").get_caller_identity()["Account"]
        code, out, _ = run_cli([*dry_run_args(config), "--lookup"])
        assert boto3.client("s3").list_buckets()["Buckets"] == []  # read-only
        assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert code == 0
    assert f"account          {account}" in out
    assert "stack            scones-promo (does not exist: would be created)" in out
    assert f"{account}.dkr.ecr.eu-west-1.amazonaws.com/scones-promo-model (does not exist: would be created)" in out
    assert f"artifact bucket {deploy.artifact_bucket_name('scones-promo', account, 'eu-west-1')}" in out


def test_template_resources_match_cfn_lints_parser():
    text = TEMPLATE_PATH.read_text()
    decoded = decode_str(text)[0]
    expected = [
        TemplateResource(name, body["Type"], body.get("Condition")) for name, body in decoded["Resources"].items()
    ]
    assert template_resources(text) == expected
    condition = endpoint_condition(text)
    assert decoded["Conditions"][condition] == {"Fn::Equals": [{"Ref": "CreateModelEndpoint"}, "true"]}
    sagemaker = {r.type for r in expected if r.condition == condition}
    assert {"AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"} <= sagemaker


# --- The manifest ------------------------------------------------------------------------------


def test_a_deployment_records_the_manifest_the_dry_run_checks(docker, model, tmp_path):
    config = config_for(model, tmp_path)
    deploy_config = deploy.DeployConfig(stack_name=config.stack_name, model_data_path=model)
    with mock_aws():
        deploy.deploy_stack(deploy_config, moto_target(), manifest_path=config.manifest_path)
        account = boto3.client("sts").get_caller_identity()["Account"]
        bucket = deploy.artifact_bucket_name(config.stack_name, account, "eu-west-1")
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert not [key for key in keys if key.startswith("artifacts/model/")]  # served locally, not uploaded
    recorded = manifest.read_manifest(config.manifest_path)
    assert recorded.target == "https://cloudformation.eu-west-1.amazonaws.com"  # where it was deployed
    assert (recorded.stack_name, recorded.region) == ("scones-promo", "eu-west-1")
    plan = plan_promotion(config, AwsTarget())
    assert recorded.artifacts == {name: digest for name, digest in plan.digests.items() if name != "model image ID"}


def test_an_emulator_deploy_of_the_model_image_records_its_id(docker, model, tmp_path):
    """docker compose: `scones deploy --model-url http://model:8080 --model-image scones-model:latest`."""
    options = DeployOptions(stack_name="scones-promo", model_url="http://model:8080", model_image="scones-model:latest")
    said = []
    with mock_aws():
        deploy_to_emulator(SimpleNamespace(aws=moto_target()), options, model_paths(tmp_path), tmp_path, said.append)
    recorded = manifest.read_manifest(tmp_path / manifest.MANIFEST_NAME)
    assert recorded.artifacts[manifest.MODEL_IMAGE_ID] == IMAGE_ID
    assert recorded.artifacts[manifest.MODEL_DATA] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert f"the model server runs scones-model:latest ({IMAGE_ID}): recorded with the artifacts" in said
    assert docker.argvs()[0][:2] == ["image", "inspect"]


def test_the_manifest_is_only_written_after_a_successful_deployment(model, tmp_path):
    path = tmp_path / "artifacts.json"
    with mock_aws(), pytest.raises(DeployError):
        deploy.deploy_stack(
            deploy.DeployConfig(stack_name="1-bad-name", model_data_path=model), moto_target(), manifest_path=path
        )
    assert not path.exists()


def test_model_image_inputs_cover_the_build_context_and_nothing_else(tmp_path):
    context = tmp_path / "local_model"
    caches_and_wheels = shutil.ignore_patterns("__pycache__", "*.pyc", "*.whl")
    shutil.copytree(manifest.MODEL_IMAGE_CONTEXT, context, ignore=caches_and_wheels)
    before = manifest.model_image_inputs_sha256(context)
    assert before == manifest.model_image_inputs_sha256()  # caches in the repository change nothing
    (context / "__pycache__").mkdir(exist_ok=True)
    (context / "__pycache__" / "serve.cpython-311.pyc").write_bytes(b"bytecode")
    assert manifest.model_image_inputs_sha256(context) == before
    (context / "wheels" / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"wheel")
    assert manifest.model_image_inputs_sha256(context) == before  # an offline build's wheels: pinned elsewhere
    (context / "requirements.txt").write_text((context / "requirements.txt").read_text() + "extra==1.0\n")
    assert manifest.model_image_inputs_sha256(context) != before
    (context / "serve.py").write_text((context / "serve.py").read_text() + "\n# changed\n")
    assert manifest.model_image_inputs_sha256(context) != before
    # What the hash assumes the build context to be: local_model/ without bytecode caches.
    rules = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert rules == ["*", "!local_model/", "local_model/**/__pycache__", "local_model/**/*.pyc"]


def test_unreadable_manifests_are_reported_with_the_fix(tmp_path):
    path = tmp_path / "artifacts.json"
    path.write_text("{not json")
    with pytest.raises(manifest.ManifestError, match="deploy to the emulator again"):
        manifest.read_manifest(path)
    path.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(manifest.ManifestError, match="not a scones-artifacts/1 manifest"):
        manifest.read_manifest(path)


# --- Configuration -----------------------------------------------------------------------------


def test_defaults_agree_with_the_scones_cli_and_compose():
    from scones.pipeline import sagemaker_local, steps

    assert steps.model_paths(DEFAULT_WORKDIR).tarball == DEFAULT_MODEL_PATH
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert DEFAULT_LOCAL_IMAGE == compose["services"]["model"]["image"] == sagemaker_local.DEFAULT_IMAGE_URI
    assert default_repository(DEFAULT_STACK_NAME) == "scones-model"


@pytest.mark.parametrize(
    ("stack_name", "repository"), [("scones", "scones-model"), ("Scones--Dev-", "scones-dev-model"), ("A1", "a1-model")]
)
def test_default_repository_is_a_valid_ecr_name(stack_name, repository):
    assert default_repository(stack_name) == repository
    PromotionConfig(stack_name=stack_name).check()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"repository": "Scones_Model"}, "ECR repository name"),
        ({"instance_type": "m5.large"}, "not a SageMaker one"),
        ({"endpoint_name": "Bad_Name"}, "lower-case"),
        ({"stack_name": "9lives"}, "must start with a letter"),
    ],
)
def test_bad_promotion_configurations_are_refused(changes, message):
    with pytest.raises(DeployError, match=message):
        PromotionConfig(**changes).check()


def test_the_promotion_is_part_of_the_one_command_line():
    deploy_help = run_cli(["deploy", "--help"])[1]
    assert all(option in deploy_help for option in ("--target", "--dry-run", "--lookup", "--allow-untested", "--image"))
    assert "--keep-repository" in run_cli(["teardown", "--help"])[1]
