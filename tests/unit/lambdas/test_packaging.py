"""The Lambda zips work on their own, with only what the Lambda runtime provides (stdlib + boto3).

ministack runs handlers with the project's interpreter, where the editable install makes every project
module and torch importable: a module missing from a zip, or a stray import, would pass there and fail on
AWS. These tests catch both without AWS (see cloud/EMULATORS.md).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cloud.artifacts import LAMBDA_HANDLERS, LAMBDAS_DIR, build_lambda_zip

# What the AWS Python runtime provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def imported_top_level_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("path", sorted(LAMBDAS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_lambda_modules_import_only_stdlib_boto3_and_each_other(path):
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "lambdas"}
    assert imported_top_level_modules(path) - allowed == set()


@pytest.fixture(scope="module")
def runtime_site(tmp_path_factory) -> Path:
    """A site directory holding only the packages the Lambda runtime has, linked from this environment."""
    site = tmp_path_factory.mktemp("lambda-runtime-site")
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        source = Path(spec.origin)
        source = source.parent if source.name == "__init__.py" else source
        (site / source.name).symlink_to(source)
    return site


ISOLATED_IMPORT = """
import importlib, json, sys
code_dir, site, module = sys.argv[1:4]
sys.path[:] = [code_dir] + [p for p in sys.path if "site-packages" not in p and p not in ("", ".")] + [site]
handler = importlib.import_module(module).handler
outside = sorted(n for n, m in sys.modules.items()
                 if n.split(".")[0] == "lambdas" and not (m.__file__ or "").startswith(code_dir))
print(json.dumps({"callable": callable(handler), "outside": outside}))
"""


@pytest.mark.parametrize("handler", sorted(LAMBDA_HANDLERS.values()))
def test_each_zip_imports_in_an_interpreter_with_only_the_runtime_packages(handler, tmp_path, runtime_site):
    with zipfile.ZipFile(io.BytesIO(build_lambda_zip(handler))) as archive:
        archive.extractall(tmp_path)
    # -S: no site-packages, so neither torch nor the project's editable install is importable.
    completed = subprocess.run(
        [sys.executable, "-S", "-c", ISOLATED_IMPORT, str(tmp_path), str(runtime_site), f"lambdas.{handler}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == '{"callable": true, "outside": []}'
