"""Shipped as `scones_debug.py` in the zip of the one function `scones up --debug FUNCTION` debugs (never on AWS,
never in a normal deploy): the function's Handler points here, and this handler waits for a debugger, then calls
the real one, imported from the developer's source tree so breakpoints set in those files hit as they are.

Its settings come from the function's environment (scones/local/debugging.py sets them). debugpy comes from the
environment the emulator runs handlers with: the project's, on ministack and on LocalStack's subprocess
executor alike."""

import importlib
import logging
import os
import sys
import time

HANDLER_VAR = "SCONES_DEBUG_HANDLER"  # "lambdas.classify_image.handler": the handler being debugged
PORT_VAR = "SCONES_DEBUG_PORT"  # the debug adapter's port on 127.0.0.1
SOURCE_ROOT_VAR = "SCONES_DEBUG_SOURCE_ROOT"  # the folder holding lambdas/: where breakpoints are set
WAIT_VAR = "SCONES_DEBUG_WAIT_SECONDS"  # how long an invocation waits for a debugger before running without one

logger = logging.getLogger("scones_debug")
logger.setLevel(logging.INFO)
if not logger.handlers:
    logger.addHandler(logging.StreamHandler())

_debugged = {}  # filled on the first invocation: the real handler, and whether debugpy listens


def set_up() -> dict:
    """Import the real handler from the source tree and start listening for a debugger, once per environment."""
    if not _debugged:
        sys.path.insert(0, os.environ[SOURCE_ROOT_VAR])
        module, _, name = os.environ[HANDLER_VAR].rpartition(".")
        _debugged["handler"] = getattr(importlib.import_module(module), name)
        try:
            import debugpy

            debugpy.listen(("127.0.0.1", int(os.environ[PORT_VAR])))
            _debugged["debugpy"] = debugpy
            logger.info("scones debug: debugpy listens on 127.0.0.1:%s for %s", os.environ[PORT_VAR], module)
        except Exception as error:  # another environment of this function holds the port: this one runs undebugged
            _debugged["debugpy"] = None
            logger.warning("scones debug: no debugger for this environment (%s: %s)", type(error).__name__, error)
    return _debugged


def handler(event, context):
    debugged = set_up()
    debugpy = debugged["debugpy"]
    if debugpy is not None and not debugpy.is_client_connected():
        logger.info("scones debug: waiting for a debugger on 127.0.0.1:%s", os.environ[PORT_VAR])
        deadline = time.monotonic() + float(os.environ.get(WAIT_VAR, "300"))
        while not debugpy.is_client_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
    if debugpy is not None and debugpy.is_client_connected():
        debugpy.wait_for_client()  # returns once the client has sent its breakpoints (configurationDone)
    return debugged["handler"](event, context)
