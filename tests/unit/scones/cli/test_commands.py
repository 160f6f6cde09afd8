"""The `scones` command line without network: help a newcomer can follow, argument parsing, and the
one-line errors and exit codes users and scripts meet when something is missing or wrong. One module of
about 430 lines for the command line as a user meets it (the promotion's commands: test_plan.py,
test_promote.py); each command's journey against an emulator is in tests/integration/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.artifacts import build_artifacts
from lambdas.contract import CLASSES, DEFAULT_CONFIDENCE_THRESHOLD
from local_model.classifier import load_model_dir, pack_model_tar
from scones import cli
from scones.errors import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from scones.local.state_file import CorruptStateError, SessionState, read_state, write_state
from scones.pipeline import steps
from tests.helpers.captures import write_capture_file
from tests.helpers.image_samples import make_model_dir

COMMANDS = (
    "demo",
    "stage",
    "train",
    "deploy",
    "up",
    "classify",
    "evaluate",
    "captures",
    "monitor",
    "teardown",
    "serve",
    "models",
    "shadow",
    "compare",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No emulator, workdir or AWS configuration from the developer's shell; no way to reach AWS."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "SCONES_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def trained_workdir(workdir, model_dir) -> Path:
    """A workdir that has a model as `scones train` leaves it: model.tar.gz and its unpacked copy."""
    paths = steps.model_paths(workdir)
    shutil.copytree(model_dir, paths.model_dir)
    pack_model_tar(paths.model_dir, paths.tarball)
    return workdir


def test_a_workdir_holding_only_model_tar_gz_gets_it_unpacked(workdir, model_dir):
    """model/model.tar.gz copied from another machine is a trained model: its unpacked copy is made."""
    paths = steps.model_paths(workdir)
    pack_model_tar(model_dir, paths.tarball)
    assert steps.require_model(workdir) == paths
    assert (paths.model_dir / "model.json").read_bytes() == (model_dir / "model.json").read_bytes()
    assert load_model_dir(paths.model_dir) is not None


def test_a_replaced_model_tar_gz_replaces_the_unpacked_copy(trained_workdir, tmp_path):
    paths = steps.model_paths(trained_workdir)
    other = make_model_dir(tmp_path / "other", seed=7)
    meta = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**meta, "note": "trained elsewhere"}))
    pack_model_tar(other, paths.tarball)
    steps.require_model(trained_workdir)
    assert (paths.model_dir / "model.json").read_bytes() == (other / "model.json").read_bytes()


@pytest.mark.parametrize(
    ("content", "says"), [(b"not a tarball", "not a readable model.tar.gz"), (None, "holds no model.json")]
)
def test_an_unreadable_model_tar_gz_is_named_and_the_old_copy_kept(trained_workdir, tmp_path, content, says):
    paths = steps.model_paths(trained_workdir)
    before = (paths.model_dir / "model.json").read_bytes()
    if content is None:  # a real tarball, of something else
        (tmp_path / "stray").mkdir()
        (tmp_path / "stray" / "notes.txt").write_text("no model here")
        pack_model_tar(tmp_path / "stray", paths.tarball)
    else:
        paths.tarball.write_bytes(content)
    result = run("serve", "--workdir", trained_workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert says in error_line(result)
    assert (paths.model_dir / "model.json").read_bytes() == before
    assert not [p for p in paths.model_dir.parent.iterdir() if p.name.startswith(".model-")]  # no leftovers


def test_only_an_unpacked_model_names_the_missing_tarball(workdir, model_dir):
    paths = steps.model_paths(workdir)
    shutil.copytree(model_dir, paths.model_dir)
    result = run("deploy", "--workdir", workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert f"{paths.tarball} is missing" in error_line(result) and "but not its model.tar.gz" in error_line(result)


def run(*args: str):
    return CliRunner().invoke(cli.app, [str(a) for a in args], prog_name="scones")


def error_line(result) -> str:
    """The error a command printed: exactly one line on stderr, starting with `error: `."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Help -------------------------------------------------------------------------------------------


def test_help_lists_every_command_examples_targets_and_exit_codes():
    result = run("--help")
    assert result.exit_code == EXIT_OK
    out = result.stdout
    for command in COMMANDS:
        assert f"\n  {command} " in out
    assert "scones demo --data-dir ../shared/data/cifar100-bikes --quick" in out
    assert "AWS_ENDPOINT_URL" in out and "--target aws" in out and "SCONES_WORKDIR" in out
    for code, meaning in [(0, "ok"), (1, "a step failed"), (2, "usage"), (3, "environment not ready"), (130, "Ctrl-C")]:
        assert any(line.strip().startswith(str(code)) and meaning in line for line in out.splitlines()), code


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == EXIT_OK
    assert "Example" in result.stdout
    assert f"scones {command}" in result.stdout


def test_no_arguments_shows_the_help_as_a_usage_error():
    result = run()
    assert result.exit_code == EXIT_USAGE
    assert "Commands:" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("demo", "--no-such-option"),
        ("demo", "--concurrency", "0"),
        ("deploy", "--target", "gcp"),
        ("evaluate", "--via", "carrier-pigeon"),
        ("classify",),
        ("up", "--threshold", "1.5"),
    ],
)
def test_bad_options_are_usage_errors(args):
    assert run(*args).exit_code == EXIT_USAGE


# --- Data and training --------------------------------------------------------------------------


def test_a_missing_data_dir_is_a_usage_error_naming_it(workdir, tmp_path):
    result = run("stage", "--data-dir", tmp_path / "nowhere", "--workdir", workdir)
    assert result.exit_code == EXIT_USAGE
    assert "nowhere is not a directory" in error_line(result)


def test_a_data_dir_without_class_folders_is_a_usage_error_with_the_layout(workdir, tmp_path):
    (tmp_path / "photos").mkdir()
    result = run("stage", "--data-dir", tmp_path / "photos", "--workdir", workdir)
    assert result.exit_code == EXIT_USAGE
    assert "bicycle/ and motorcycle/" in error_line(result)


def test_a_data_dir_with_an_unreadable_image_names_the_file(workdir, tmp_path):
    for name in CLASSES:
        (tmp_path / "photos" / name).mkdir(parents=True)
    (tmp_path / "photos" / "bicycle" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "photos" / "motorcycle" / "also.png").write_bytes(b"nor this")
    result = run("stage", "--data-dir", tmp_path / "photos", "--workdir", workdir)
    assert result.exit_code == EXIT_USAGE
    assert "broken.png" in error_line(result)


@pytest.mark.parametrize(
    ("override", "message"), [("epochs", "KEY=VALUE"), ("no_such=1", "unknown"), ("epochs=many", "not a int")]
)
@pytest.mark.parametrize("command", ["train", "demo"])
def test_a_bad_hyperparameter_override_fails_before_any_work(command, override, message, workdir):
    result = run(command, "--set", override, "--workdir", workdir)
    assert result.exit_code == EXIT_USAGE
    assert message in error_line(result)
    assert not workdir.exists()  # nothing was staged, downloaded or started


@pytest.mark.parametrize("command", [("up",), ("deploy",), ("serve",), ("evaluate", "--via", "model")])
def test_commands_that_need_a_model_say_to_train_first(command, workdir):
    if command[0] == "evaluate":  # evaluate wants staged images before the model
        (workdir / "data").mkdir(parents=True)
        (workdir / "data" / "staged.json").write_text(json.dumps({"source": "x", "test_is_holdout": True}))
    result = run(*command, "--workdir", workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "no trained model" in error_line(result) and "scones train" in error_line(result)


def test_evaluate_without_staged_images_says_how_to_stage(workdir):
    result = run("evaluate", "--workdir", workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "scones stage" in error_line(result)


def test_ctrl_c_is_exit_130_with_a_short_message(workdir, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "stage_data", interrupted)
    result = run("stage", "--workdir", workdir)
    assert result.exit_code == EXIT_INTERRUPTED
    assert result.stderr.strip() == "interrupted"


# --- Emulator, state file, deployment ---------------------------------------------------------------


@pytest.mark.parametrize("command", [("classify", "s3://bucket/key.png"), ("captures",), ("deploy",)])
def test_without_an_emulator_the_error_says_to_start_one(command, trained_workdir):
    result = run(*command, "--workdir", trained_workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    line = error_line(result)
    assert "no emulator is running" in line and "scones up" in line and "AWS_ENDPOINT_URL" in line


def test_an_emulator_url_that_does_not_answer_is_an_environment_error(monkeypatch, workdir):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    result = run("classify", "s3://bucket/key.png", "--workdir", workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert f"{url} (AWS_ENDPOINT_URL) does not answer" in error_line(result)
    assert "unset AWS_ENDPOINT_URL" in error_line(result)


def test_a_recorded_emulator_that_stopped_says_so(workdir):
    url = f"http://127.0.0.1:{closed_port()}"
    write_state(workdir, SessionState(target="emulator", stack_name="scones", aws_endpoint_url=url))
    result = run("classify", "s3://bucket/key.png", "--workdir", workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "recorded in the state file" in error_line(result) and "scones up" in error_line(result)


def test_teardown_with_nothing_deployed_succeeds_and_says_so(workdir):
    result = run("teardown", "--workdir", workdir)
    assert result.exit_code == EXIT_OK
    assert "nothing to tear down" in result.stdout


def test_teardown_forgets_a_session_whose_emulator_has_stopped(workdir):
    url = f"http://127.0.0.1:{closed_port()}"
    write_state(workdir, SessionState(target="emulator", stack_name="scones", aws_endpoint_url=url))
    result = run("teardown", "--workdir", workdir)
    assert result.exit_code == EXIT_OK, result.output
    assert "has stopped" in result.stdout
    assert read_state(workdir) is None


def test_a_second_up_on_the_same_workdir_is_refused(trained_workdir):
    # Stands in for a running `scones up`: alive, and "scones" on its command line.
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "scones"])
    try:
        write_state(trained_workdir, SessionState(target="emulator", stack_name="scones", owner_pid=owner.pid))
        for command in ("up", "demo"):
            result = run(command, "--workdir", trained_workdir)
            assert result.exit_code == EXIT_ENVIRONMENT
            assert f"pid {owner.pid}) is already running" in error_line(result)
    finally:
        owner.kill()
        owner.wait()


def test_a_state_file_whose_pid_is_now_another_program_is_not_a_session(trained_workdir):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not SessionState(target="emulator", stack_name="scones", owner_pid=stranger.pid).owner_alive
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("command", "option"), [("up", "--emulator-port"), ("up", "--model-port"), ("demo", "--model-port")]
)
def test_a_taken_port_fails_before_anything_starts(command, option, trained_workdir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(command, option, port, "--workdir", trained_workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert f"port {port} on 127.0.0.1 ({option}) is already in use" in error_line(result)
    assert not (trained_workdir / "logs").exists()  # nothing was started


# --- classify's argument -----------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["s3://bucket-only", "s3:///key.png", "missing.png"])
def test_classify_needs_a_file_or_an_s3_uri(image, workdir):
    result = run("classify", image, "--workdir", workdir)
    assert result.exit_code == EXIT_USAGE
    assert "s3://BUCKET/KEY" in error_line(result)


def test_classify_refuses_a_file_that_is_not_an_image(tmp_path, workdir):
    note = tmp_path / "note.png"
    note.write_text("a delivery note")
    result = run("classify", note, "--workdir", workdir)
    assert result.exit_code == EXIT_USAGE
    assert "NotAnImageError" in error_line(result)


# --- AWS ---------------------------------------------------------------------------------------------


def test_deploy_to_aws_without_credentials_is_an_environment_error(trained_workdir, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    result = run("deploy", "--target", "aws", "--workdir", trained_workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "no AWS credentials" in error_line(result) and "aws configure" in error_line(result)


def test_deploy_to_aws_without_a_region_says_to_set_one(trained_workdir):
    result = run("deploy", "--target", "aws", "--workdir", trained_workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "AWS_DEFAULT_REGION" in error_line(result)


@pytest.mark.parametrize("args", [("--target", "aws", "--model-url", "http://model:8080"), ("--dry-run",)])
def test_deploy_options_for_the_other_target_are_usage_errors(args, trained_workdir):
    result = run("deploy", *args, "--workdir", trained_workdir)
    assert result.exit_code == EXIT_USAGE
    error_line(result)


def test_dry_run_of_a_promotion_without_a_local_test_fails_and_says_why(trained_workdir, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("PATH", "")  # no docker CLI: the image ID cannot be determined, which the plan says
    result = run("deploy", "--target", "aws", "--dry-run", "--workdir", trained_workdir)
    assert result.exit_code == EXIT_FAILED
    assert "no AWS call is made" in result.stdout
    assert "NOT proven" in result.stdout and "artifacts.json" in result.stdout


# --- captures from a folder ----------------------------------------------------------------------------


def write_captures(folder: Path, answers: list[list[float]]) -> None:
    write_capture_file(folder, answers, datetime.now(UTC))


def test_captures_from_a_folder_summarizes_and_plots(tmp_path, workdir):
    write_captures(tmp_path / "captured", [[0.97, 0.03], [0.2, 0.8], [0.01, 0.99], [0.6, 0.4]])
    plot = tmp_path / "plot.png"
    result = run("captures", "--source", tmp_path / "captured", "--plot", plot, "--workdir", workdir)
    assert result.exit_code == EXIT_OK, result.output
    out = result.stdout
    assert "4 records" in out
    assert "bicycle 2 (50%), motorcycle 2 (50%)" in out
    assert f"below {DEFAULT_CONFIDENCE_THRESHOLD}" in out and "2 (50%)" in out
    assert plot.read_bytes().startswith(b"\x89PNG")

    as_json = json.loads(run("captures", "--source", tmp_path / "captured", "--json", "--plot", plot).stdout)
    assert as_json["count"] == 4 and as_json["by_class"] == {"bicycle": 2, "motorcycle": 2}
    assert as_json["threshold"] == DEFAULT_CONFIDENCE_THRESHOLD


def test_captures_json_keeps_both_loss_counts(tmp_path, workdir):
    """An answer that is not two probabilities and a line that is not JSON are different losses: --json
    reports each under its own key, neither overwriting the other."""
    write_captures(tmp_path / "captured", [[0.97, 0.03], [0.5, 0.3, 0.2]])
    with (next((tmp_path / "captured").rglob("*.jsonl"))).open("a") as f:
        f.write("not json\n")
    as_json = json.loads(run("captures", "--source", tmp_path / "captured", "--json", "--workdir", workdir).stdout)
    assert as_json["count"] == 2 and as_json["bad_answers"] == 1
    assert as_json["unreadable"]["total"] == 1 and as_json["unreadable"]["by_kind"] == {"line not JSON": 1}
    text = run("captures", "--source", tmp_path / "captured", "--workdir", workdir).stdout
    assert "bad answers   1 records whose answer is not 2 probabilities" in text


def test_captures_from_an_empty_folder_say_there_are_none(tmp_path, workdir):
    (tmp_path / "empty").mkdir()
    result = run("captures", "--source", tmp_path / "empty", "--workdir", workdir)
    assert result.exit_code == EXIT_OK
    assert "no captured inferences" in result.stdout


def test_state_file_round_trip_ignores_unknown_keys(workdir):
    state = SessionState(target="emulator", stack_name="s", outputs={"A": "b"}, model_server_pid=42)
    write_state(workdir, state)
    (workdir / "state.json").write_text((workdir / "state.json").read_text().replace("{", '{"later_key": 1, ', 1))
    assert read_state(workdir) == state


@pytest.mark.parametrize("content", ["{half a fi", "[1, 2]", '{"stack_name": "s"}', '{"target": 1, "stack_name": "s"}'])
def test_a_broken_state_file_is_a_named_error_not_nothing_running(workdir, content):
    # Read as "nothing running", it would let a second `scones up` start beside a running one.
    workdir.mkdir()
    (workdir / "state.json").write_text(content)
    with pytest.raises(CorruptStateError, match=r"state\.json cannot be read|has no target"):
        read_state(workdir)
    result = run("teardown", "--workdir", workdir)
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "state file" in error_line(result) and "delete" in error_line(result)
    assert (workdir / "state.json").read_text() == content  # nothing lost: the file is left for the user


def test_artifacts_lists_what_a_deploy_uploads_with_the_trained_model(trained_workdir):
    listed = json.loads(run("artifacts", "--workdir", trained_workdir, "--json").stdout)
    built = build_artifacts(steps.model_paths(trained_workdir).tarball)
    assert listed == {p: {"key": a.key, "sha256": a.sha256, "bytes": len(a.data)} for p, a in built.items()}
    assert "ModelDataKey" in listed
    text = run("artifacts", "--workdir", trained_workdir).stdout
    assert all(a.key in text and a.sha256[:16] in text for a in built.values())
