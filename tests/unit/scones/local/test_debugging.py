"""scones/local/debugging.py and its shim without an emulator: what the debug zip holds, and that the shim runs the real
handler from the source tree, also when another environment of the function already holds the debug port."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

from cloud.artifacts import REPOSITORY, ROOT, build_lambda_zip
from scones.local import debug_shim
from scones.local.debugging import SHIM_MODULE, debug_zip

RUN_SHIM = """
import json, sys
sys.path.insert(0, sys.argv[1])
import scones_debug
print(json.dumps(scones_debug.handler(json.loads(sys.argv[2]), None)))
"""


def test_the_debug_zip_is_the_functions_zip_plus_the_shim():
    plain = zipfile.ZipFile(io.BytesIO(build_lambda_zip("filter_low_confidence")))
    debug = zipfile.ZipFile(io.BytesIO(debug_zip("filter_low_confidence", REPOSITORY)))
    assert debug.namelist() == [*plain.namelist(), f"{SHIM_MODULE}.py"]
    assert debug.read(f"{SHIM_MODULE}.py") == Path(debug_shim.__file__).read_bytes()
    assert all(debug.read(name) == plain.read(name) for name in plain.namelist())


def test_with_its_port_taken_the_shim_runs_the_real_handler_without_a_debugger(tmp_path):
    (tmp_path / "code.zip").write_bytes(debug_zip("filter_low_confidence", REPOSITORY))
    event = {**json.loads((ROOT / "tests" / "events" / "filter_low_confidence.json").read_text()), "id": "t"}
    with socket.socket() as holder:  # another environment of the function listens there already
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = {
            **os.environ,
            debug_shim.HANDLER_VAR: "lambdas.filter_low_confidence.handler",
            debug_shim.PORT_VAR: str(holder.getsockname()[1]),
            debug_shim.SOURCE_ROOT_VAR: str(REPOSITORY.root),
            "CONFIDENCE_THRESHOLD": "0.9",
        }
        done = subprocess.run(
            [sys.executable, "-c", RUN_SHIM, str(tmp_path / "code.zip"), json.dumps(event)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == event
    assert "no debugger for this environment" in done.stderr
