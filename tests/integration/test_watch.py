"""`scones up --watch` (issue 22): an edited handler, an edited state machine and a broken edit, saved in a copy of
the sources while `up --watch` runs on the suite's emulator. The next execution runs the edit; a broken edit is
reported and the running version keeps serving."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest

from local_model.artifact import META_FILE, pack_model_tar
from scones.errors import EXIT_OK
from scones.local.state_file import read_state
from scones.pipeline import steps
from scones.workflow.execution import ExecutionResult

from .conftest import NEEDS_UP_ON_THE_HOST
from .dev_loop import copy_sources, edit, run_on, start_up_on_suite_emulator, stop_up, workdir_with_model

pytestmark = [pytest.mark.integration, NEEDS_UP_ON_THE_HOST]

APPLIED_WITHIN_S = 60.0  # generous for two busy cores; benchmarks/watch_latency.py measures the real figure
RETURN_EVENT = "    return event\n\n\ndef check_confidence"


@pytest.fixture(scope="module")
def watching(aws_endpoint, model_dir, tmp_path_factory):
    """One `scones up --watch` for the module, on a copy of the sources: (up, sources, state)."""
    tmp_path = tmp_path_factory.mktemp("watch")
    workdir = workdir_with_model(tmp_path, model_dir)
    sources = copy_sources(tmp_path / "src")
    up, _ = start_up_on_suite_emulator(workdir, sources, "--watch")
    try:
        up.wait_for_line("watching ")
        yield up, sources, read_state(workdir), workdir
    finally:
        code, output = stop_up(up)
        print("\n".join(line for line in output.splitlines() if line.startswith("watch: ")))
        assert code == EXIT_OK, output


def watch_line(up, since: int) -> str:
    """The next line `up` prints about a reload, from line `since` on."""
    return up.wait_for_line("watch: ", timeout_s=APPLIED_WITHIN_S, since=since)


def states_entered(result: ExecutionResult) -> list[str]:
    history = boto3.client("stepfunctions").get_execution_history(executionArn=result.execution_arn, maxResults=1000)
    return [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]


def test_an_edited_handler_runs_in_the_next_execution(watching, test_images):
    up, sources, state, _ = watching
    image = test_images.confident["bicycle"].path.read_bytes()
    since = len(up.lines)
    edit(
        sources.lambdas_dir / "filter_low_confidence.py",
        RETURN_EVENT,
        '    return {**event, "watched": 1}\n\n\ndef check_confidence',
    )
    line = watch_line(up, since)
    assert "lambdas/filter_low_confidence.py changed ->" in line, line
    assert "filter-low-confidence (UpdateFunctionCode)" in line
    assert "classify-image" not in line and "serialize-image-data" not in line  # only the zip that changed
    result = run_on(image, state.outputs)
    assert result.status == "SUCCEEDED" and result.output["watched"] == 1, result.summary()


def test_edits_saved_together_are_applied_as_one_update(watching):
    up, sources, _, _ = watching
    since = len(up.lines)
    for handler in ("classify_image.py", "serialize_image_data.py"):
        path = sources.lambdas_dir / handler
        path.write_text(path.read_text() + "\n# saved together\n")
    line = watch_line(up, since)
    assert "lambdas/classify_image.py, lambdas/serialize_image_data.py changed" in line, line
    assert "classify-image (UpdateFunctionCode)" in line and "serialize-image-data (UpdateFunctionCode)" in line
    assert "filter-low-confidence" not in line
    assert [x for x in up.lines[since:] if x.startswith("watch: ")] == [line]


def test_an_edited_state_machine_runs_its_new_state(watching, test_images):
    up, sources, state, _ = watching
    image = test_images.confident["motorcycle"].path.read_bytes()
    path = sources.state_machines["StateMachineDefinitionKey"]
    definition = json.loads(path.read_text())
    first = definition["StartAt"]
    definition["StartAt"] = "Watched Edit"
    definition["States"] = {"Watched Edit": {"Type": "Pass", "Next": first}, **definition["States"]}
    since = len(up.lines)
    path.write_text(json.dumps(definition, indent=2))
    line = watch_line(up, since)
    assert "statemachine/image_classification.asl.json changed ->" in line, line
    assert "(UpdateStateMachine)" in line and "change set" not in line
    result = run_on(image, state.outputs)
    assert result.status == "SUCCEEDED", result.summary()
    assert states_entered(result)[0] == "Watched Edit"


@pytest.mark.parametrize(
    ("file", "breaking", "reported"),
    [
        ("filter_low_confidence.py", ("def handler(", "def handler(:"), "SyntaxError in filter_low_confidence.py"),
        (
            "filter_low_confidence.py",
            ("import annotations\n", "import annotations\nimport no_such_module_x\n"),
            "the handler does not import: lambdas.filter_low_confidence: ModuleNotFoundError",
        ),
        ("image_classification.asl.json", ('"StartAt": "', '"StartAt": "No Such State'), "asl-validator refuses"),
    ],
    ids=["syntax-error", "failing-import", "invalid-asl"],
)
def test_a_broken_edit_is_reported_and_the_running_version_keeps_serving(
    watching, test_images, file, breaking, reported
):
    up, sources, state, _ = watching
    image = test_images.confident["bicycle"].path.read_bytes()
    path = (sources.lambdas_dir if file.endswith(".py") else sources.root / "statemachine") / file
    good = path.read_text()
    before = run_on(image, state.outputs)
    assert before.status == "SUCCEEDED", before.summary()
    since = len(up.lines)
    edit(path, *breaking)
    try:
        line = watch_line(up, since)
        assert "NOT applied, the running version keeps serving" in line and reported in line, line
        after = run_on(image, state.outputs)
        assert after.status == "SUCCEEDED", after.summary()
        assert after.output == before.output | {"id": after.output["id"]}
        assert states_entered(after) == states_entered(before)
    finally:
        since = len(up.lines)
        path.write_text(good)
        watch_line(up, since)  # the repair is seen (and has nothing to apply)


def test_an_edited_template_goes_through_a_change_set(watching):
    up, sources, state, _ = watching
    since = len(up.lines)
    edit(
        sources.template,
        "          STACK_NAME: !Ref AWS::StackName\n\n  # --- State machine",
        '          STACK_NAME: !Ref AWS::StackName\n          EDITED_BY_WATCH: "yes"\n\n  # --- State machine',
    )
    line = watch_line(up, since)
    assert "cloud/template.yaml changed ->" in line and "updated through a change set" in line, line
    name = state.outputs["FilterLowConfidenceFunctionName"]
    variables = boto3.client("lambda").get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert variables["EDITED_BY_WATCH"] == "yes"


def test_a_new_model_is_reloaded_by_the_same_model_server(watching, model_dir, tmp_path, test_images):
    up, _, state, workdir = watching
    retrained = tmp_path / "retrained"
    shutil.copytree(model_dir, retrained)
    meta = json.loads((retrained / META_FILE).read_text())
    (retrained / META_FILE).write_text(json.dumps({**meta, "metrics": {**meta["metrics"], "retrained": 1}}))
    since = len(up.lines)
    pack_model_tar(retrained, steps.model_paths(workdir).tarball)
    line = watch_line(up, since)
    assert "model server reloaded the new model.tar.gz (model version 2, same process and URL)" in line, line
    after = read_state(workdir)
    assert (after.model_server_url, after.model_server_pid) == (state.model_server_url, state.model_server_pid)
    assert after.model_sha256 == steps.sha256_of(steps.model_paths(workdir).tarball) != state.model_sha256
    result = run_on(test_images.confident["bicycle"].path.read_bytes(), state.outputs)
    assert result.status == "SUCCEEDED", result.summary()
