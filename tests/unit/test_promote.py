"""Unit tests of the promotion to AWS (cloud/promote.py, cloud/manifest.py): the dry run and its proof
against the local test's manifest, the docker commands (a fake `docker` on PATH records its argv), and
ECR, S3, CloudFormation and SageMaker on moto. No network, no Docker daemon, no AWS account."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import boto3
import botocore.endpoint
import pytest
import yaml
from cfnlint.decode import decode_str
from conftest import use_offline_aws
from image_samples import make_model_dir
from moto import mock_aws
from moto_tls import moto_sees_tls  # noqa: F401 (an autouse fixture)
from typer.testing import CliRunner

from cloud import artifacts, deploy, manifest, promote
from cloud.artifacts import LAMBDAS_DIR, TEMPLATE_PATH, artifact_digests, build_artifacts, build_lambda_zip
from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_LOCAL_IMAGE, DEFAULT_STACK_NAME, DEFAULT_WORKDIR
from cloud.errors import (
    DeployError,
    DockerCommandError,
    DockerUnavailableError,
    ImagePlatformError,
    ImageVerificationError,
    LocalImageMissingError,
    RealAwsRefusedError,
    TeardownIncompleteError,
    UntestedArtifactsError,
)
from cloud.image import (
    LocalImage,
    check_platform,
    default_repository,
    ensure_repository,
    inspect_local_image,
    instance_platform,
    push_image,
    verify_pushed_image,
)
from cloud.plan import (
    DEFAULT_MODEL_PATH,
    PromotionConfig,
    TemplateResource,
    endpoint_condition,
    plan_promotion,
    template_resources,
)
from cloud.stack import stack_resource_id, stack_status
from local_model.artifact import pack_model_tar
from scones.cli import app
from scones.deployment import DeployOptions, deploy_to_emulator
from scones.steps import model_paths

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ID = "sha256:" + hashlib.sha256(b"the scones-model image config").hexdigest()
EMULATOR = "http://127.0.0.1:4566"  # what deploy_stack records when it deploys to an emulator there

FAKE_DOCKER = """\
#!{python}
# A docker CLI without a daemon: records each call's argv (and stdin, for login) and answers as docker does.
import json, os, sys

args = sys.argv[1:]
stdin = sys.stdin.read() if "--password-stdin" in args else None
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({{"argv": args, "stdin": stdin}}) + "\\n")
fail = os.environ.get("FAKE_DOCKER_FAIL", "")
if fail == "daemon":
    sys.exit("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
if args[:2] == ["image", "inspect"]:
    if fail == "no-such-image":
        print("[]")
        sys.exit("Error: No such image: " + args[-1])
    print(os.environ["FAKE_DOCKER_IMAGE_ID"], os.environ.get("FAKE_DOCKER_PLATFORM", "linux/amd64"))
elif args[0] == "login":
    print("Login Succeeded")
elif args[0] == "push":
    print("The push refers to repository [" + args[1].rsplit(":", 1)[0] + "]")
    print("5f70bf18a086: Pushed")
    print(args[1].rsplit(":", 1)[1] + ": digest: sha256:" + "d" * 64 + " size: 1573")
elif args[0] == "logout":
    print("Removing login credentials for " + args[1])
"""


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch):
    use_offline_aws(monkeypatch, "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class FakeDocker:
    def __init__(self, bin_dir: Path, log: Path):
        self.bin_dir, self.log = bin_dir, log

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]


@pytest.fixture
def docker(tmp_path, monkeypatch) -> FakeDocker:
    """A fake `docker` first on PATH (the only one: the machine's real CLI would look for a daemon)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker-calls.jsonl"))
    monkeypatch.setenv("FAKE_DOCKER_IMAGE_ID", IMAGE_ID)
    return FakeDocker(bin_dir, tmp_path / "docker-calls.jsonl")


@pytest.fixture
def no_docker(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def model(tmp_path) -> Path:
    """A trained model where `scones train` leaves it in the workdir tmp_path (a small untrained one will do)."""
    path = tmp_path / "model" / "model.tar.gz"
    pack_model_tar(make_model_dir(tmp_path / "trained"), path)
    return path


def config_for(model: Path, tmp_path: Path, **changes) -> PromotionConfig:
    return PromotionConfig(
        stack_name="scones-promo", model_data_path=model, manifest_path=tmp_path / "artifacts.json", **changes
    )


def record_local_test(config: PromotionConfig, image_id: str | None = None, target: str = EMULATOR) -> None:
    """The manifest deploy_stack writes after a deployment to the emulator at `target` (see
    test_a_deployment_records_the_manifest_the_dry_run_checks for deploy_stack writing it)."""
    artifacts = build_artifacts(config.model_data_path)
    record = manifest.Manifest(artifact_digests(artifacts, image_id), target, config.stack_name, "us-east-1")
    manifest.write_manifest(config.manifest_path, record)


def moto_target(progress=lambda _: None) -> AwsTarget:
    """moto answers at AWS's own endpoints, so the target must allow real AWS."""
    return AwsTarget(allow_aws=True, timeout_s=60, progress=progress)


def run_cli(argv: list[str], capsys=None) -> tuple[int, str, str]:
    """`scones ARGV...`: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, argv, prog_name="scones")
    return result.exit_code, result.stdout, result.stderr


def dry_run_args(config: PromotionConfig, *extra: str) -> list[str]:
    """`scones deploy --target aws --dry-run` in the workdir that holds config's model and manifest."""
    workdir = config.manifest_path.parent
    assert config.model_data_path == workdir / "model" / "model.tar.gz"  # where `scones train` puts it
    return [
        "deploy",
        "--target",
        "aws",
        "--dry-run",
        "--stack-name",
        config.stack_name,
        "--workdir",
        str(workdir),
        *extra,
    ]


@pytest.fixture
def no_network(monkeypatch):
    """Any HTTP request botocore would send fails the test."""

    def refuse(self, request):
        raise AssertionError(f"the dry run sent {request.method} {request.url}")

    monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", refuse)


# --- Dry run -----------------------------------------------------------------------------------


def test_dry_run_with_the_tested_artifacts_says_identical_and_lists_what_would_be_created(
    docker, model, tmp_path, capsys, no_network
):
    config = config_for(model, tmp_path)
    record_local_test(config, IMAGE_ID)
    code, out, _ = run_cli(dry_run_args(config, "--instance-type", "ml.c5.xlarge"), capsys)
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


def test_dry_run_names_a_changed_model_and_fails(docker, model, tmp_path, capsys):
    config = config_for(model, tmp_path)
    record_local_test(config)
    tested = hashlib.sha256(model.read_bytes()).hexdigest()
    model.write_bytes(b"model bytes, retrained after the test")
    code, out, _ = run_cli(dry_run_args(config), capsys)
    assert code == 1
    now = hashlib.sha256(model.read_bytes()).hexdigest()
    assert f"NOT the artifacts tested locally on {EMULATOR}" in out
    assert f"  - model.tar.gz differs: tested {tested}, now {now}" in out
    assert "classify_image.zip differs" not in out
    assert run_cli([*dry_run_args(config), "--allow-untested"], capsys)[0] == 0  # told otherwise


def test_dry_run_names_a_changed_lambda_zip_and_fails(docker, model, tmp_path, capsys, monkeypatch):
    config = config_for(model, tmp_path)
    record_local_test(config)
    edited = tmp_path / "lambdas"
    shutil.copytree(LAMBDAS_DIR, edited, ignore=shutil.ignore_patterns("__pycache__"))
    source = edited / "classify_image.py"
    source.write_text(source.read_text() + "\n# edited after the local test\n")
    build = build_lambda_zip
    monkeypatch.setattr(artifacts, "build_lambda_zip", lambda handler, lambdas_dir=edited: build(handler, lambdas_dir))
    code, out, _ = run_cli(dry_run_args(config), capsys)
    assert code == 1
    (difference,) = [line for line in out.splitlines() if line.startswith("  - ")]
    assert difference.startswith("  - classify_image.zip differs: tested ")


def test_dry_run_works_with_no_credentials_no_docker_and_no_network(
    no_docker, model, tmp_path, capsys, monkeypatch, no_network
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert boto3.Session().get_credentials() is None
    config = config_for(model, tmp_path)
    record_local_test(config)  # the embedded journey: no image was part of the test
    code, out, _ = run_cli(dry_run_args(config), capsys)
    assert code == 0, out
    assert "model image ID                 cannot be determined here" in out
    assert "(the docker CLI is not on PATH" in out
    assert "identical to the artifacts tested locally" in out
    # --lookup without credentials still prints the plan; it says why it looked nothing up.
    code, out, _ = run_cli([*dry_run_args(config), "--lookup"], capsys)
    assert code == 0
    assert "lookup           skipped: no AWS credentials: run `aws configure`" in out


def test_dry_run_checks_the_image_id_when_the_local_test_recorded_one(docker, model, tmp_path, capsys, monkeypatch):
    config = config_for(model, tmp_path)
    record_local_test(config, IMAGE_ID)  # the docker compose journey served the model from the image
    monkeypatch.setenv("FAKE_DOCKER_IMAGE_ID", "sha256:" + "e" * 64)  # rebuilt since
    code, out, _ = run_cli(dry_run_args(config), capsys)
    assert code == 1
    assert f"  - model image ID differs: tested {IMAGE_ID}, now sha256:{'e' * 64}" in out
    # Without a daemon the recorded ID cannot be checked here; the promotion itself checks it.
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "daemon")
    code, out, _ = run_cli(dry_run_args(config), capsys)
    assert code == 0
    assert "cannot be checked here" in out and "(no Docker daemon (Cannot connect" in out


def test_dry_run_without_a_record_of_a_local_test_fails_with_the_fix(no_docker, model, tmp_path, capsys):
    config = config_for(model, tmp_path)
    code, out, _ = run_cli(dry_run_args(config), capsys)
    assert code == 1
    assert f"NOT proven to be the tested artifacts: no record of a local test at {config.manifest_path}" in out
    assert "deploy to the emulator first (`scones up`" in out.splitlines()[-1]


def test_a_record_of_a_deployment_to_aws_is_no_local_test(no_docker, model, tmp_path, capsys):
    config = config_for(model, tmp_path)
    record_local_test(config, target="https://cloudformation.eu-west-1.amazonaws.com")
    code, out, _ = run_cli(dry_run_args(config), capsys)
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


def test_dry_run_lookup_reads_the_account_and_what_exists(docker, model, tmp_path, capsys):
    config = config_for(model, tmp_path)
    record_local_test(config)
    with mock_aws():
        account = boto3.client("sts").get_caller_identity()["Account"]
        code, out, _ = run_cli([*dry_run_args(config), "--lookup"], capsys)
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


# --- Docker commands ---------------------------------------------------------------------------


@pytest.fixture
def ecr_login():
    """(repository URI, authorization data) as ECR answers them."""
    with mock_aws():
        ecr = boto3.client("ecr")
        repository = ensure_repository(ecr, "scones-model", "scones", progress=lambda _: None)
        yield repository["repositoryUri"], ecr.get_authorization_token()["authorizationData"][0]


def test_push_logs_in_on_stdin_tags_by_id_pushes_and_logs_out(docker, ecr_login):
    repository_uri, authorization = ecr_login
    image = inspect_local_image("scones-model:latest")
    assert image == LocalImage("scones-model:latest", IMAGE_ID, "linux/amd64")
    pushed = push_image(image, repository_uri, authorization)
    assert pushed == f"{repository_uri}:sha256-{IMAGE_ID.removeprefix('sha256:')}"
    registry = repository_uri.split("/", 1)[0]
    username, password = base64.b64decode(authorization["authorizationToken"]).decode().split(":")
    calls = docker.calls()
    assert [c["argv"] for c in calls[1:]] == [
        ["login", "--username", username, "--password-stdin", registry],
        ["tag", IMAGE_ID, pushed],
        ["push", pushed],
        ["logout", registry],
    ]
    assert calls[1]["stdin"] == password
    assert not any(password in arg for c in calls for arg in c["argv"])


def test_a_failed_push_still_logs_out(docker, ecr_login):
    repository_uri, authorization = ecr_login
    image = inspect_local_image()
    script = docker.bin_dir / "docker"
    script.write_text(script.read_text() + 'if args[0] == "push":\n    sys.exit("denied: not authorized")\n')
    with pytest.raises(DockerCommandError, match=r"`docker push .*` failed: denied: not authorized"):
        push_image(image, repository_uri, authorization)
    assert docker.argvs()[-1][0] == "logout"


def test_docker_problems_are_named_with_the_fix(docker, monkeypatch, no_docker):
    with pytest.raises(DockerUnavailableError, match="not on PATH: install Docker"):
        inspect_local_image()
    monkeypatch.setenv("PATH", str(docker.bin_dir))
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "daemon")
    with pytest.raises(DockerUnavailableError, match=r"no Docker daemon .*: start Docker"):
        inspect_local_image()
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "no-such-image")
    with pytest.raises(LocalImageMissingError, match="docker compose build model"):
        inspect_local_image("scones-model:latest")


@pytest.mark.parametrize(
    ("instance_type", "platform"),
    [
        ("ml.m5.large", "linux/amd64"),
        ("ml.g5.xlarge", "linux/amd64"),
        ("ml.inf2.xlarge", "linux/amd64"),
        ("ml.c5d.xlarge", "linux/amd64"),
        ("ml.c7g.large", "linux/arm64"),
        ("ml.m6gd.xlarge", "linux/arm64"),
        ("ml.c6gn.2xlarge", "linux/arm64"),
        ("ml.t4g.medium", "linux/arm64"),
    ],
)
def test_instance_platform(instance_type, platform):
    assert instance_platform(instance_type) == platform


def test_an_arm64_image_is_not_pushed_for_an_x86_endpoint():
    image = LocalImage("scones-model:latest", IMAGE_ID, "linux/arm64")  # built on an Apple silicon Mac
    with pytest.raises(ImagePlatformError, match="docker build --platform linux/amd64"):
        check_platform(image, "ml.m5.large")
    check_platform(image, "ml.c7g.large")


# --- Promotion and teardown on moto ------------------------------------------------------------

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def registry_receives(ecr, repository: str, tag: str, config_digest: str, media_type: str = DOCKER_V2) -> None:
    """What `docker push` would have stored in ECR (moto has no registry API)."""
    layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    layer = {"mediaType": layer_type, "size": 9, "digest": "sha256:" + "a" * 64}
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": config_digest},
        "layers": [layer],
    }
    ecr.put_image(
        repositoryName=repository, imageManifest=json.dumps(body), imageTag=tag, imageManifestMediaType=media_type
    )


@pytest.fixture
def registry(monkeypatch):
    """Make the fake `docker push` land in moto's ECR: the real push_image runs (fake docker), then the
    image appears in the repository as a push would leave it."""
    push = push_image

    def push_and_store(image, repository_uri, authorization):
        pushed = push(image, repository_uri, authorization)
        repository = repository_uri.split("/", 1)[1]
        registry_receives(boto3.client("ecr"), repository, image.tag, image.image_id)
        return pushed

    monkeypatch.setattr(promote, "push_image", push_and_store)


def test_promotion_pushes_uploads_deploys_and_teardown_removes_everything(docker, registry, model, tmp_path):
    config = config_for(model, tmp_path, instance_type="ml.c5.xlarge", data_capture_sampling_percentage=30)
    record_local_test(config)
    said = []
    with mock_aws():
        result = promote.promote(config, moto_target(said.append))
        ecr, sagemaker, s3, cfn = (boto3.client(n) for n in ("ecr", "sagemaker", "s3", "cloudformation"))
        account = boto3.client("sts").get_caller_identity()["Account"]

        (repository,) = ecr.describe_repositories()["repositories"]
        assert repository["repositoryName"] == "scones-promo-model"
        assert repository["imageTagMutability"] == "IMMUTABLE"
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        tags = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
        assert {"Key": "scones-stack", "Value": "scones-promo"} in tags
        tag = "sha256-" + IMAGE_ID.removeprefix("sha256:")
        assert result.image_uri == f"{repository['repositoryUri']}:{tag}"
        assert [argv[0] for argv in docker.argvs()] == ["image", "login", "tag", "push", "logout"]
        assert docker.argvs()[3] == ["push", result.image_uri]

        # The stack's SageMaker resources: the pushed image, the uploaded model, data capture on.
        assert cfn.describe_stacks(StackName="scones-promo")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        (endpoint,) = sagemaker.list_endpoints()["Endpoints"]
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint["EndpointName"])
        endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        (variant,) = endpoint_config["ProductionVariants"]
        assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.c5.xlarge", 1)
        image_bucket = stack_resource_id(cfn, "scones-promo", "ImageBucket")
        capture = endpoint_config["DataCaptureConfig"]
        assert capture["EnableCapture"] and capture["InitialSamplingPercentage"] == 30
        assert capture["DestinationS3Uri"] == f"s3://{image_bucket}/data-capture"
        assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
        container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        assert container["Image"] == result.image_uri
        artifact_bucket = deploy.artifact_bucket_name("scones-promo", account, "eu-west-1")
        model_key = f"artifacts/model/{hashlib.sha256(model.read_bytes()).hexdigest()}.tar.gz"
        assert container["ModelDataUrl"] == f"s3://{artifact_bucket}/{model_key}"
        assert s3.get_object(Bucket=artifact_bucket, Key=model_key)["Body"].read() == model.read_bytes()
        assert f"identical to the artifacts tested locally on {EMULATOR}" in said[0]

        # Promoting again pushes nothing: the tag is the image ID, and it is there.
        promote.promote(config, moto_target(said.append))
        assert [argv[0] for argv in docker.argvs()].count("push") == 1

        s3.put_object(Bucket=image_bucket, Key="data-capture/AllTraffic/x.jsonl", Body=b"{}")
        promote.teardown_promotion(moto_target(said.append), "scones-promo")
        assert stack_status(cfn, "scones-promo") is None
        assert sagemaker.list_endpoints()["Endpoints"] == []
        assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
        assert sagemaker.list_models()["Models"] == []
        assert ecr.describe_repositories()["repositories"] == []
        assert s3.list_buckets()["Buckets"] == []
        assert any(line.endswith("is gone") and "SageMaker endpoint" in line for line in said)
        promote.teardown_promotion(moto_target(said.append), "scones-promo")  # twice


def test_untested_artifacts_are_refused_before_anything_is_created(docker, registry, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config)
    model.write_bytes(b"a model nobody tested")
    with mock_aws():
        with pytest.raises(UntestedArtifactsError, match=r"model\.tar\.gz differs"):
            promote.promote(config, moto_target(lambda _: None))
        assert boto3.client("ecr").describe_repositories()["repositories"] == []
        assert boto3.client("s3").list_buckets()["Buckets"] == []
        promote.promote(config, moto_target(lambda _: None), allow_untested=True)
        assert boto3.client("sagemaker").list_endpoints()["Endpoints"]


def test_an_image_in_ecr_that_is_not_the_local_one_is_refused(docker, model, tmp_path):
    config = config_for(model, tmp_path)
    record_local_test(config)
    tag = "sha256-" + IMAGE_ID.removeprefix("sha256:")
    with mock_aws():
        ecr = boto3.client("ecr")
        ensure_repository(ecr, "scones-promo-model", "scones-promo")
        registry_receives(ecr, "scones-promo-model", tag, "sha256:" + "f" * 64)
        with pytest.raises(ImageVerificationError, match="is not the local image"):
            promote.promote(config, moto_target(lambda _: None))
        assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []


def test_an_oci_image_is_refused_because_sagemaker_cannot_pull_it(docker, model, tmp_path):
    tag = "sha256-" + IMAGE_ID.removeprefix("sha256:")
    with mock_aws():
        ecr = boto3.client("ecr")
        ensure_repository(ecr, "scones-model", "scones")
        registry_receives(ecr, "scones-model", tag, IMAGE_ID, media_type="application/vnd.oci.image.manifest.v1+json")
        with pytest.raises(ImageVerificationError, match="--provenance=false"):
            verify_pushed_image(ecr, "scones-model", tag, IMAGE_ID)


def test_real_aws_is_refused_unless_asked_for_before_any_call(docker, model, tmp_path, monkeypatch):
    config = config_for(model, tmp_path)
    record_local_test(config)
    with mock_aws():
        with pytest.raises(RealAwsRefusedError, match="refusing to touch real AWS"):
            promote.promote(config, AwsTarget())
        with pytest.raises(RealAwsRefusedError):
            promote.teardown_promotion(AwsTarget(), "scones-promo")
        # The command line asks for AWS only with --target aws: an emulator target that resolves to AWS is refused.
        monkeypatch.setenv("AWS_ENDPOINT_URL", "https://cloudformation.eu-west-1.amazonaws.com")
        code, _, err = run_cli(["deploy", "--workdir", str(tmp_path)])
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert code == 3
    assert err.startswith("error: AWS_ENDPOINT_URL names real AWS (https://cloudformation.eu-west-1.amazonaws.com)")
    assert docker.calls() == []


def test_aws_without_credentials_is_one_line_with_the_fix(model, tmp_path, monkeypatch, no_network):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for command in ("deploy", "teardown"):
        code, _, err = run_cli([command, "--target", "aws", "--workdir", str(tmp_path)])
        assert code == 3
        assert err.startswith("error: --target aws: no AWS credentials (Unable to locate credentials): run `aws ")
        assert err.endswith("or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run again\n")
        assert err.count("\n") == 1


def test_no_region_is_one_line_with_the_fix(monkeypatch, tmp_path, no_network):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run_cli(["deploy", "--target", "aws", "--dry-run", "--workdir", str(tmp_path)])
    assert (code, err) == (
        3,
        "error: no AWS region configured: set AWS_DEFAULT_REGION or a profile's region "
        "(any region works on an emulator)\n",
    )


def test_teardown_keeping_the_repository_removes_only_the_pushed_images():
    ours = "sha256-" + "1" * 64
    with mock_aws():
        ecr = boto3.client("ecr")
        ensure_repository(ecr, "scones-model", "scones")
        registry_receives(ecr, "scones-model", ours, "sha256:" + "1" * 64)
        registry_receives(ecr, "scones-model", "hand-pushed", "sha256:" + "2" * 64)
        promote.teardown_promotion(moto_target(), keep_repository=True)
        tags = [i.get("imageTag") for i in ecr.list_images(repositoryName="scones-model")["imageIds"]]
        assert tags == ["hand-pushed"]


def test_teardown_keeps_a_repository_promote_did_not_create():
    with mock_aws():
        ecr = boto3.client("ecr")
        ecr.create_repository(repositoryName="scones-model")  # someone else's
        registry_receives(ecr, "scones-model", "sha256-" + "1" * 64, "sha256:" + "1" * 64)
        said = []
        promote.teardown_promotion(moto_target(said.append))
        assert ecr.list_images(repositoryName="scones-model")["imageIds"] == []
    assert "kept the repository (promote did not create it for stack scones)" in said[-1]


def test_teardown_fails_loudly_when_the_endpoint_outlives_the_stack():
    with mock_aws():
        sagemaker, target = boto3.client("sagemaker"), moto_target()
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sagemaker.create_model(ModelName="m", ExecutionRoleArn=role, PrimaryContainer={"Image": "i"})
        variant = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[variant])
        sagemaker.create_endpoint(EndpointName="left-behind", EndpointConfigName="c")
        with pytest.raises(TeardownIncompleteError, match="aws sagemaker delete-endpoint --endpoint-name"):
            promote.wait_until_endpoint_deleted(target, "left-behind", deadline=0)


# --- Configuration -----------------------------------------------------------------------------


def test_defaults_agree_with_the_scones_cli_and_compose():
    from scones import sagemaker_local, steps

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
