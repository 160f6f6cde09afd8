"""`scones solution check` and the refusals of `scones solution run` that come before any AWS call. The runs
themselves are tested on the emulators (tests/integration/test_solution.py). No network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scones import cli
from scones.errors import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE

SOLUTIONS = Path(__file__).resolve().parents[3] / "integration" / "course_solutions"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("AWS_", "SCONES_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(*args: str):
    return CliRunner().invoke(cli.app, ["solution", *map(str, args)])


def test_check_maps_a_clean_solution_and_finds_no_trap():
    root = SOLUTIONS / "single_file"
    result = run("check", root / "statemachine.json", root / "lambda.py")
    assert result.exit_code == EXIT_OK, result.output
    assert "serializeImageData" in result.output and "lambda.py:serialize_image_data (by name)" in result.output
    assert "no known trap found" in result.output


@pytest.mark.parametrize(
    ("folder", "definition", "sources", "kinds"),
    [
        ("traps_bytes", "statemachine.json", ["lambda.py"], ["bytes-result"]),
        (
            "traps_body",
            "statemachine.json",
            ["lambda.py"],
            ["accept-not-json", "exception-swallowed", "body-is-a-string"],
        ),
        ("traps_path", "definition.json", ["serialize.py", "classify.py", "filter.py"], ["path-selects-nothing"]),
        (
            "traps_endpoint",
            "definition.json",
            ["serialize.py", "classify.py", "filter.py"],
            ["runtime-endpoint-overridden", "sagemaker-sdk-import"],
        ),
    ],
)
def test_check_reports_each_planted_trap_and_exits_1(folder, definition, sources, kinds):
    root = SOLUTIONS / folder
    result = run("check", root / definition, *(root / s for s in sources), "--json")
    assert result.exit_code == EXIT_FAILED, result.output
    traps = json.loads(result.stdout)["traps"]
    assert [t["kind"] for t in traps] == kinds
    assert all(t["on_aws"] and t["fix"] for t in traps)


def test_an_undecidable_mapping_is_a_usage_error_naming_the_map_option():
    root = SOLUTIONS / "jsonata"
    result = run("check", root / "definition.asl.json", root / "serializer", root / "classifier")
    assert result.exit_code == EXIT_USAGE
    assert "--map scones-step-" in result.output


def test_run_needs_images_or_an_input_and_then_a_model_server(tmp_path):
    root = SOLUTIONS / "single_file"
    result = run("run", root / "statemachine.json", root / "lambda.py")
    assert result.exit_code == EXIT_USAGE and "--image" in result.output
    result = run("run", root / "statemachine.json", root / "lambda.py", "--input", "{}", "--workdir", tmp_path)
    assert result.exit_code == EXIT_ENVIRONMENT and "scones up" in result.output and "--model-url" in result.output


def test_run_and_check_have_help_with_examples():
    for command in ("run", "check"):
        result = run(command, "--help")
        assert result.exit_code == EXIT_OK
        assert f"scones solution {command}" in result.stdout
