"""The checks `scones up --watch` runs before applying an edit (scones/local/hot_update.py), with no emulator: the
kept-running asl-validator gives the lint stage's verdicts, the structure check stands in without Node, the
import check imports each handler from its own zip in an isolated interpreter."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile

import pytest

from cloud.artifacts import ROOT, build_lambda_zip
from scones.local.hot_update import (
    ASL_VALIDATOR_PACKAGE,
    AslChecker,
    ImportChecker,
    RejectedEditError,
    Update,
    check_structure,
    check_syntax,
)

DEFINITION = ROOT / "statemachine" / "image_classification.asl.json"
CLI = ROOT / "node_modules" / ".bin" / "asl-validator"


def edited_definition(tmp_path, change) -> tuple:
    definition = json.loads(DEFINITION.read_text())
    change(definition)
    path = tmp_path / "edited.asl.json"
    path.write_text(json.dumps(definition))
    return path


def broken_start(d):
    d["StartAt"] = "Nowhere"


def bad_path(d):
    d["States"]["Serialize Image Data"]["OutputPath"] = "$$$"


def unknown_type(d):
    d["States"]["Serialize Image Data"]["Type"] = "Teleport"


def new_pass_state(d):
    d["States"] = {"First": {"Type": "Pass", "Next": d["StartAt"]}, **d["States"]}
    d["StartAt"] = "First"


@pytest.fixture(scope="module")
def asl_checker():
    if shutil.which("node") is None or not ASL_VALIDATOR_PACKAGE.is_dir():
        pytest.fail("Node.js and node_modules/asl-validator are needed (bin/_env.sh installs them: npm ci)")
    checker = AslChecker()
    yield checker
    checker.close()


@pytest.mark.parametrize("change", [None, new_pass_state, broken_start, bad_path, unknown_type])
def test_the_kept_running_validator_agrees_with_the_lint_stages_command_line(asl_checker, tmp_path, change):
    path = edited_definition(tmp_path, change or (lambda d: None))
    cli_says_valid = subprocess.run([str(CLI), "--json-path", str(path)], capture_output=True).returncode == 0
    for _ in range(2):  # the second call reuses the compiled schemas: the same verdict
        try:
            asl_checker.check(path)
            valid = True
        except RejectedEditError as e:
            valid = False
            assert str(e).startswith("asl-validator refuses edited.asl.json: ")
        assert valid == cli_says_valid == (change in (None, new_pass_state))


def test_without_node_the_structure_check_stands_in_and_says_so(tmp_path):
    checker = AslChecker()
    checker.node = None
    note = checker.check(DEFINITION)
    assert note.startswith("Node.js is not installed") and "not by asl-validator" in note
    with pytest.raises(RejectedEditError, match="StartAt 'Nowhere' names no state"):
        checker.check(edited_definition(tmp_path, broken_start))
    (tmp_path / "text.asl.json").write_text("{not json")
    with pytest.raises(RejectedEditError, match="is not JSON"):
        checker.check(tmp_path / "text.asl.json")


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ([], "has no States object"),
        ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}, "goes to 'B', which is not a state"),
        ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}}, "no state ends the execution"),
    ],
)
def test_the_structure_check_names_what_is_wrong(definition, message):
    with pytest.raises(RejectedEditError, match=message):
        check_structure(definition, "x.asl.json")


def test_a_syntax_error_is_named_with_its_file_and_line(tmp_path):
    (tmp_path / "good.py").write_text("x = 1\n")
    (tmp_path / "bad.py").write_text("x = 1\ndef f(:\n")
    check_syntax([tmp_path / "good.py"])
    with pytest.raises(RejectedEditError, match=r"SyntaxError in bad\.py line 2"):
        check_syntax([tmp_path / "good.py", tmp_path / "bad.py"])


FUTURE = b"from __future__ import annotations\n"


def with_prefix(zipped: bytes, module: str, prefix: bytes) -> bytes:
    """The zip with `prefix` put at the top of lambdas/<module>.py (after its __future__ import)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zipped)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == f"lambdas/{module}.py":
                data = data.replace(FUTURE, FUTURE + prefix, 1)
            target.writestr(info, data)
    return out.getvalue()


def test_the_import_check_imports_each_handler_from_its_own_zip():
    checker = ImportChecker()
    try:
        good = {h: build_lambda_zip(h) for h in ("classify_image", "filter_low_confidence")}
        checker.check(good)
        broken = with_prefix(good["classify_image"], "classify_image", b"import no_such_module_here\n")
        with pytest.raises(RejectedEditError, match=r"lambdas\.classify_image: ModuleNotFoundError: No module named"):
            checker.check({"classify_image": broken})
        raising = with_prefix(good["filter_low_confidence"], "filter_low_confidence", b"raise RuntimeError('boom')\n")
        with pytest.raises(RejectedEditError, match="RuntimeError: boom"):
            checker.check({"filter_low_confidence": raising})
        printing = with_prefix(good["filter_low_confidence"], "filter_low_confidence", b"print('hello')\n")
        checker.check({"filter_low_confidence": printing})  # output at import does not confuse the check
        checker.check(good)  # each check imports afresh: the failures left nothing behind
    finally:
        checker.close()


def test_a_zip_that_lacks_a_shared_module_fails_the_import_check_though_the_repository_has_it():
    """The check sees what the Lambda runtime sees: the zip alone, not this project's editable install."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(build_lambda_zip("filter_low_confidence"))) as source,
        zipfile.ZipFile(out, "w") as target,
    ):
        for info in source.infolist():
            if info.filename != "lambdas/contract.py":
                target.writestr(info, source.read(info))
    checker = ImportChecker()
    try:
        with pytest.raises(RejectedEditError, match=r"lambdas\.contract"):
            checker.check({"filter_low_confidence": out.getvalue()})
    finally:
        checker.close()


def test_a_reload_says_what_changed_what_was_updated_and_how_long_it_took():
    done = Update(["lambdas/classify_image.py"], ["function s-classify-image (UpdateFunctionCode)"], seconds=0.314)
    assert done.describe() == (
        "lambdas/classify_image.py changed -> function s-classify-image (UpdateFunctionCode) (0.31 s)"
    )
    refused = Update(["statemachine/x.asl.json"], rejected="asl-validator refuses x.asl.json: ...")
    assert refused.describe() == (
        "statemachine/x.asl.json changed: NOT applied, the running version keeps serving: "
        "asl-validator refuses x.asl.json: ..."
    )
    assert (
        Update(["lambdas/README.py"]).describe() == "lambdas/README.py changed -> no deployed artifact changed (0.00 s)"
    )
