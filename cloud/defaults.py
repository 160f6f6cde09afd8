"""Every default of the host side, defined once: the CLI, deploy, promotion and SageMaker local mode import
them from here. Two are defined where code that cannot import this module needs them, and re-exported:
the fallback confidence threshold (lambdas/contract.py, the only module the Lambda zips share) and the
served endpoint's name (local_model/settings.py, in the model image). The template repeats some as its
parameters' Defaults and docker-compose.yml the image; tests/unit/cloud/test_defaults.py checks they agree."""

from __future__ import annotations

from pathlib import Path

from lambdas.contract import DEFAULT_CONFIDENCE_THRESHOLD
from local_model.settings import DEFAULT_ENDPOINT_NAME

__all__ = [
    "DEFAULT_CONFIDENCE_THRESHOLD",
    "DEFAULT_ENDPOINT_NAME",
    "DEFAULT_INSTANCE_TYPE",
    "DEFAULT_LOCAL_IMAGE",
    "DEFAULT_STACK_NAME",
    "DEFAULT_WORKDIR",
]

DEFAULT_STACK_NAME = "scones"
DEFAULT_WORKDIR = Path(".scones")  # staged data, model, logs, state of `scones up` (SCONES_WORKDIR overrides)
DEFAULT_LOCAL_IMAGE = "scones-model:latest"  # what `docker compose build model` tags; local mode runs it
DEFAULT_INSTANCE_TYPE = "ml.m5.large"  # the SageMaker endpoint's instance type on AWS
