"""The handlers' loggers: one JSON object per line (timestamp, level, logger, message, function, the Python
running it, and the correlation id of the execution being served), so CloudWatch Logs Insights can filter one
execution's lines across the three functions. On AWS the Lambda runtime gives the root logger a handler that
writes to the function's log stream; a plain interpreter (an emulator that runs handlers as local processes, a
test) has none, so the logger gets its own stderr handler, as the runtime would write.

The correlation id is the event's `id`: the S3 upload's event id on the trigger path (cloud/template.yaml
puts it in the execution's input), the execution's name when scones/workflow/execution.py starts it, the batch's
execution name for the items of a Distributed Map; else the Lambda request id."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# The interpreter running the handler, as the template's Runtime names it ("python3.11"): tells, in every
# line, whether an emulator ran the function on the Python the template declares.
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "runtime": RUNTIME,
            "correlation_id": correlation_id.get(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def handler_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False  # one line per record, in this format, also under the Lambda runtime
    return logger


def bind_correlation_id(event: object, context: object) -> str | None:
    """Take the correlation id for this invocation from the event (`id`) or the Lambda request id."""
    value = event.get("id") if isinstance(event, dict) else None
    if not isinstance(value, str) or not value:
        value = getattr(context, "aws_request_id", None)
    correlation_id.set(value[:256] if isinstance(value, str) else None)
    return correlation_id.get()
