"""scones/cli/rollout.py and `scones models`: what the model-update commands say when they cannot act."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from local_model.artifact import pack_model_tar
from scones import cli
from scones.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE
from scones.pipeline import registry


def run(*args):
    return CliRunner().invoke(cli.app, [str(a) for a in args], prog_name="scones")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "SCONES_WORKDIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "work"


@pytest.fixture
def version(workdir, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"confidence_threshold": {"value": 0.9}}))
    return registry.register_model(workdir, pack_model_tar(folder, tmp_path / "m.tar.gz"), source="train")


def test_models_lists_and_sets_aliases(workdir, version):
    result = run("models", "--workdir", workdir, "--set", "challenger", version.id[:8])
    assert result.exit_code == EXIT_OK, result.output
    assert f"challenger is now model version {version.short_id}" in result.stdout
    assert any(line.startswith(version.short_id) and "challenger" in line for line in result.stdout.splitlines())
    listed = json.loads(run("models", "--workdir", workdir, "--json").stdout)
    assert listed["aliases"] == {"challenger": version.id}


def test_an_unknown_version_is_a_usage_error(workdir):
    result = run("deploy", "--workdir", workdir, "--model", "abcdef", "--canary", "10")
    assert result.exit_code == EXIT_USAGE
    assert "no model version 'abcdef'" in result.stderr


def test_a_rollout_needs_a_running_endpoint(workdir, version):
    result = run("deploy", "--workdir", workdir, "--model", version.short_id, "--canary", "10", "--bake", "5")
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "start `scones up` first" in result.stderr
    assert run("shadow", "--workdir", workdir, version.short_id).exit_code == EXIT_ENVIRONMENT
    assert run("compare", "--workdir", workdir).exit_code == EXIT_ENVIRONMENT


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "--canary", "10"),
        ("deploy", "--model", "abcd", "--canary", "0"),
        ("deploy", "--model", "abcd", "--target", "aws"),
        ("shadow",),
    ],
)
def test_misused_options_are_usage_errors(workdir, args):
    assert run(*args, "--workdir", workdir).exit_code == EXIT_USAGE
