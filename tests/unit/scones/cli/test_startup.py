"""The commands that need no model code start without torch: `scones --help`, captures, teardown, classify.
Checked on a real interpreter with `-X importtime`, which lists every module the run imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scones.errors import EXIT_ENVIRONMENT, EXIT_OK


def imported_modules(args: list[str], cwd) -> tuple[int, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SCONES_"))}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "scones", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "scones.cli" in modules, result.stderr[-2000:]  # the listing is there: the check can fail
    return result.returncode, modules


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (["--help"], EXIT_OK),
        (["classify", "--help"], EXIT_OK),
        (["captures", "--source", "captured"], EXIT_OK),
        (["monitor", "--source", "captured", "--out", "report"], EXIT_OK),
        (["teardown", "--workdir", "work"], EXIT_OK),
        (["classify", "image.png", "--workdir", "work"], EXIT_ENVIRONMENT),  # no emulator: fails before AWS
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_commands_without_model_code_never_import_torch(args, exit_code, tmp_path):
    (tmp_path / "captured").mkdir()
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    code, modules = imported_modules(args, tmp_path)
    assert code == exit_code
    assert "torch" not in modules, sorted(m for m in modules if m.startswith("torch"))[:5]


def test_commands_that_train_do_import_torch(tmp_path):
    """The negative control: the same check sees torch when a command needs it (`train --set` validation)."""
    code, modules = imported_modules(["train", "--set", "no_such_thing=1", "--workdir", "work"], tmp_path)
    assert code != EXIT_OK
    assert "torch" in modules
