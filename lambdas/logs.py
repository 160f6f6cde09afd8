"""The handlers' loggers. On AWS the Lambda runtime gives the root logger a handler that writes to the
function's log stream; a plain interpreter (an emulator that runs handlers as local processes, a test) has
none and drops INFO records. There the logger gets its own stderr handler, as the runtime would write."""

from __future__ import annotations

import logging

_FORMAT = "[%(levelname)s] %(name)s: %(message)s"


def handler_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not logger.handlers:
        stderr = logging.StreamHandler()
        stderr.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(stderr)
    return logger
