"""Configuration is passed, not mutated: no module of the project's packages writes the process environment
(threads share it, and one would see another's settings). The commands, the library and the two deployables
read their settings and hand them on; children get an environment of their own. Only entry points may point
their own process somewhere (the test suites and benchmarks do, through tests/helpers/aws_environment.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scones", "cloud", "lambdas", "local_model")
WRITING_METHODS = {"update", "pop", "popitem", "setdefault", "clear", "__setitem__", "__delitem__"}


def is_environ(node: ast.AST) -> bool:
    """`os.environ` (or a bare `environ` imported from os)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def environment_writes(source: str, filename: str) -> list[str]:
    writes = []
    for node in ast.walk(ast.parse(source, filename)):
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        writes += [f"{filename}:{node.lineno}" for t in targets if isinstance(t, ast.Subscript) and is_environ(t.value)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if is_environ(func.value) and func.attr in WRITING_METHODS:
                writes.append(f"{filename}:{node.lineno}")
            if isinstance(func.value, ast.Name) and func.value.id == "os" and func.attr in ("putenv", "unsetenv"):
                writes.append(f"{filename}:{node.lineno}")
    return writes


def test_no_module_of_the_project_writes_the_process_environment() -> None:
    modules = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(modules) > 80  # the packages were found
    writes = [w for path in modules for w in environment_writes(path.read_text(), str(path.relative_to(ROOT)))]
    assert writes == []


@pytest.mark.parametrize(
    "line",
    [
        "os.environ['X'] = '1'",
        "os.environ.update(a)",
        "os.environ.setdefault('X', '1')",
        "os.environ.pop('X')",
        "del os.environ['X']",
        "os.environ.clear()",
        "os.putenv('X', '1')",
        "environ['X'] = '1'",
    ],
)
def test_the_check_sees_every_way_of_writing_it(line: str) -> None:
    assert environment_writes(f"import os\nfrom os import environ\n{line}\n", "m.py") == ["m.py:3"]


def test_reading_it_is_not_writing_it() -> None:
    source = "import os\nx = os.environ.get('X')\ny = os.environ['Y']\nz = {**os.environ}\nenv = dict(os.environ)\n"
    assert environment_writes(source, "m.py") == []
