"""What the promotion tests share (test_plan.py, test_image.py, test_promote.py) besides their fixtures (in
conftest.py): the fake `docker` CLI, the record of a local test, moto as the AWS target, what `docker push`
would leave in ECR, and the command runner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from cloud import manifest
from cloud.artifacts import artifact_digests, build_artifacts
from cloud.aws import AwsTarget
from cloud.plan import (
    PromotionConfig,
)
from scones.cli import app

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


class FakeDocker:
    def __init__(self, bin_dir: Path, log: Path):
        self.bin_dir, self.log = bin_dir, log

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]


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


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`scones ARGV...`: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, argv, prog_name="scones")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not an error the command line names: show its traceback
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
