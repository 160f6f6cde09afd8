"""The README's configuration table against the code: every setting a deployable or a test wrapper reads from
its environment (a SCONES_* name in the code) has a row, and every row names a variable something reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where settings are read: the packages, the wrappers' scripts, the compose file and the shell entry points.
SOURCES = [
    *(path for package in ("scones", "cloud", "lambdas", "local_model") for path in (ROOT / package).rglob("*.py")),
    *(ROOT / "tests" / "docker").glob("*.py"),
    *(ROOT / "tests" / "localstack").glob("*.py"),
    ROOT / "tests" / "integration" / "conftest.py",
    ROOT / "docker-compose.yml",
    *(ROOT / "bin").iterdir(),
]
# Set by the project for itself, never by a user: not configuration.
INTERNAL = {
    "SCONES_DEBUG_HANDLER": "set by `scones up --debug` in the debugged function's environment, for its shim",
    "SCONES_DEBUG_PORT": "the same",
    "SCONES_DEBUG_SOURCE_ROOT": "the same",
    "SCONES_DEBUG_WAIT_SECONDS": "the same",
    "SCONES_IT_EMULATOR_CONTAINER": "set by tests/docker/run.py for the integration suite it runs",
}
NAME = re.compile(r"\bSCONES_[A-Z0-9_]*[A-Z0-9]\b")


def configuration_rows() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}


def names_in_code() -> set[str]:
    return {name for path in SOURCES if path.is_file() for name in NAME.findall(path.read_text())}


def test_every_setting_the_code_reads_has_a_row() -> None:
    missing = names_in_code() - configuration_rows() - set(INTERNAL)
    assert missing == set()


def test_every_row_names_a_variable_something_reads() -> None:
    rows = configuration_rows()
    assert len(rows) > 30
    code = "\n".join(path.read_text() for path in SOURCES if path.is_file())
    stale = {name for name in rows if name not in code}
    assert stale == set()
