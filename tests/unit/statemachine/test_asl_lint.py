"""The lint stage's ASL check (bin/test runs asl-validator from package.json over statemachine/): the
definitions pass, and the same check fails on a dangling Next, which cfn-lint cannot see (the template
loads the definitions from S3)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEFINITIONS = sorted((ROOT / "statemachine").glob("*.asl.json"))


def asl_validator(*paths: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("asl-validator") or str(ROOT / "node_modules" / ".bin" / "asl-validator")
    arguments = [item for path in paths for item in ("--json-path", str(path))]
    return subprocess.run([tool, *arguments], capture_output=True, text=True, timeout=60)


def test_the_lint_stage_runs_asl_validator_over_every_definition():
    lines = (ROOT / "bin" / "test").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stage lint "))
    command = " ".join(lines[start : start + 2])  # the stage's command, continued on the next line
    assert "asl-validator" in command and "statemachine/*.asl.json" in command
    assert len(DEFINITIONS) == 2


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_the_state_machines_are_valid_asl(definition):
    result = asl_validator(definition)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_a_dangling_next_fails_the_check(definition, tmp_path):
    states = json.loads(definition.read_text())
    text = json.dumps(states)
    (first_next,) = {json.loads(text)["States"][name].get("Next") for name in [states["StartAt"]]}
    assert first_next, "the first state has a Next to break"
    broken = tmp_path / definition.name
    broken.write_text(text.replace(f'"Next": "{first_next}"', '"Next": "Nowhere"', 1))
    result = asl_validator(broken)
    assert result.returncode != 0
    assert "MISSING_TRANSITION_TARGET" in result.stdout + result.stderr and "Nowhere" in result.stdout + result.stderr
