"""`scones up --debug FUNCTION`: that function's deployed code gets a shim (scones/local/debug_shim.py, shipped as
`scones_debug.py` beside the handler) that listens for a debugger with debugpy on 127.0.0.1 and makes each
invocation wait for one, then runs the real handler imported from the source tree, so breakpoints set in those
files hit when an execution reaches the function. Both emulators run handlers as local processes with the
project's interpreter, which has debugpy; the function's Timeout is raised so a paused handler is not killed."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cloud.artifacts import SourceTree, build_lambda_zip
from cloud.aws import AwsTarget
from scones.local import debug_shim
from scones.local.hot_update import wait_until_updated
from scones.workflow.invoke import deployed_function_name

SHIM_MODULE = "scones_debug"
DEFAULT_DEBUG_PORT = 5678  # debugpy's and VS Code's usual port
DEBUG_TIMEOUT_S = 900  # Lambda's maximum: a handler paused at a breakpoint is not killed for its Timeout
WAIT_FOR_DEBUGGER_S = 300  # an invocation runs without a debugger if none attaches by then


@dataclass(frozen=True)
class Debugged:
    handler: str  # the handler module: classify_image, ...
    port: int


def debug_zip(handler: str, sources: SourceTree) -> bytes:
    """The function's zip with the shim added as a top-level module."""
    buffer = io.BytesIO(build_lambda_zip(handler, sources.lambdas_dir))
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo(f"{SHIM_MODULE}.py", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        archive.writestr(info, Path(debug_shim.__file__).read_bytes())
    return buffer.getvalue()


def enable_debugging(target: AwsTarget, stack_name: str, handler: str, port: int, sources: SourceTree) -> str:
    """Deploy the shim into the stack's function for `handler`; the function's deployed name."""
    name = deployed_function_name(target, stack_name, handler)
    client = target.client("lambda")
    client.update_function_code(FunctionName=name, ZipFile=debug_zip(handler, sources))
    wait_until_updated(client, name)
    configuration = client.get_function_configuration(FunctionName=name)
    variables = dict(configuration.get("Environment", {}).get("Variables", {}))
    variables.update(
        {
            debug_shim.HANDLER_VAR: f"lambdas.{handler}.handler",
            debug_shim.PORT_VAR: str(port),
            debug_shim.SOURCE_ROOT_VAR: str(sources.root),
            debug_shim.WAIT_VAR: str(WAIT_FOR_DEBUGGER_S),
        }
    )
    client.update_function_configuration(
        FunctionName=name,
        Handler=f"{SHIM_MODULE}.handler",
        Timeout=DEBUG_TIMEOUT_S,
        Environment={"Variables": variables},
    )
    wait_until_updated(client, name)
    return name
