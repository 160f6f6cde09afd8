"""Serving settings of the model container: every environment variable it reads, read at call time.

The container contract fixes the defaults (model in /opt/ml/model, port 8080); the SCONES_* names let
the same code run on a laptop, in tests and in the image without code changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Model directory: ours first, then what the SageMaker toolkits set, then the contract path.
MODEL_DIR_VARS = ("SCONES_MODEL_DIR", "SM_MODEL_DIR")
DEFAULT_MODEL_DIR = "/opt/ml/model"
HOST_VAR = "SCONES_HOST"
DEFAULT_HOST = "127.0.0.1"  # the container entry passes 0.0.0.0 explicitly
# SageMaker sets SAGEMAKER_BIND_TO_PORT for multi-container endpoints; otherwise the contract says 8080.
PORT_VARS = ("SCONES_PORT", "SAGEMAKER_BIND_TO_PORT")
DEFAULT_PORT = 8080
MAX_BODY_BYTES_VAR = "SCONES_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints accept at most 6 MB per request
MAX_IMAGE_PIXELS_VAR = "SCONES_MAX_IMAGE_PIXELS"
# Pixels actually decoded (a JPEG's after its 1/8 reduced decode): 2048x2048, 16 MB as RGBA, is 4,096 times
# what the 32x32 model sees; any camera JPEG up to Pillow's own 179 MP cap fits, a decompression bomb does not.
DEFAULT_MAX_IMAGE_PIXELS = 2048 * 2048
HEADER_TIMEOUT_VAR = "SCONES_HEADER_TIMEOUT_SECONDS"
DEFAULT_HEADER_TIMEOUT_S = 10.0  # a connection without complete request headers this long is closed (408)
BODY_TIMEOUT_VAR = "SCONES_BODY_TIMEOUT_SECONDS"
DEFAULT_BODY_TIMEOUT_S = 10.0  # a client silent this long in the middle of its body gets a 408
TORCH_THREADS_VAR = "SCONES_TORCH_THREADS"
DEFAULT_TORCH_THREADS = 1  # one 32x32 image is too small to gain from intra-op threads; measured fastest
LOG_LEVEL_VAR = "SCONES_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "info"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

CAPTURE_DESTINATION_VAR = "SCONES_CAPTURE_DESTINATION"  # s3://bucket/prefix or a local folder; unset = off
CAPTURE_SAMPLING_PERCENTAGE_VAR = "SCONES_CAPTURE_SAMPLING_PERCENTAGE"
DEFAULT_CAPTURE_SAMPLING_PERCENTAGE = 100.0
CAPTURE_FLUSH_SECONDS_VAR = "SCONES_CAPTURE_FLUSH_SECONDS"
DEFAULT_CAPTURE_FLUSH_SECONDS = 1.0  # short, so a local user sees captured requests almost at once
# The endpoint's production and shadow variants (local_model/variants.py), read at start and on SIGHUP;
# unset or no such file: one variant, AllTraffic, serving the model directory.
VARIANTS_FILE_VAR = "SCONES_VARIANTS_FILE"
ENDPOINT_NAME_VAR = "SCONES_ENDPOINT_NAME"
# The endpoint this server is, as on SageMaker: `/endpoints/{name}/invocations` answers this name only (others
# get SageMaker's ValidationError, so a typo fails here, not after promotion), and it names the captures (also
# those of /invocations, which carries no name). One default for the whole project: cloud/deploy.py uses it.
DEFAULT_ENDPOINT_NAME = "scones-image-classifier"
# The endpoint-name rule, written once (the server checks requests with it; cloud/deploy.py checks a deploy's
# name, and the template's AllowedPattern is this pattern: a test ties them). SageMaker's own rule allows upper
# case, but SageMaker lower-cases endpoint ARNs and the IAM policy names the endpoint, so names are lower case.
ENDPOINT_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")
# The path prefix under which the SageMaker Runtime path answers any endpoint name SageMaker allows (its own rule,
# upper case included), logged: for code written against another endpoint (a course solution run by `scones
# solution run`, whose functions get AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=<server>/any-endpoint). The root path and
# so the project's own stack stay strict.
ANY_ENDPOINT_PATH = "/any-endpoint"
SAGEMAKER_ENDPOINT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class CaptureSettings:
    destination: str | None
    sampling_percentage: float
    flush_interval_s: float
    endpoint_name: str

    @property
    def enabled(self) -> bool:
        return bool(self.destination) and self.sampling_percentage > 0


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path
    host: str
    port: int
    max_body_bytes: int
    max_image_pixels: int
    header_timeout_s: float
    body_timeout_s: float
    torch_threads: int
    log_level: str
    capture: CaptureSettings
    variants_file: Path | None = None


def _first(environ: Mapping[str, str], names: tuple[str, ...], default: str) -> tuple[str, str]:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return names[0], default


def _number(environ: Mapping[str, str], names: tuple[str, ...], default, kind, low, high=None):
    name, raw = _first(environ, names, str(default))
    try:
        value = kind(raw)
    except ValueError as e:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from e
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise SettingsError(f"{name}={raw!r} must be {bounds}")
    return value


def _log_level(environ: Mapping[str, str]) -> str:
    level = (environ.get(LOG_LEVEL_VAR, "").strip() or DEFAULT_LOG_LEVEL).lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"{LOG_LEVEL_VAR}={level!r} must be one of {', '.join(LOG_LEVELS)}")
    return level


def read_serve_settings(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Read all serving settings from `environ` (default: the process environment) now."""
    env = os.environ if environ is None else environ
    capture = CaptureSettings(
        destination=env.get(CAPTURE_DESTINATION_VAR, "").strip() or None,
        sampling_percentage=_number(
            env, (CAPTURE_SAMPLING_PERCENTAGE_VAR,), DEFAULT_CAPTURE_SAMPLING_PERCENTAGE, float, 0.0, 100.0
        ),
        flush_interval_s=_number(env, (CAPTURE_FLUSH_SECONDS_VAR,), DEFAULT_CAPTURE_FLUSH_SECONDS, float, 0.01, 3600.0),
        endpoint_name=env.get(ENDPOINT_NAME_VAR, "").strip() or DEFAULT_ENDPOINT_NAME,
    )
    return ServeSettings(
        model_dir=Path(_first(env, MODEL_DIR_VARS, DEFAULT_MODEL_DIR)[1]),
        host=env.get(HOST_VAR, "").strip() or DEFAULT_HOST,
        port=_number(env, PORT_VARS, DEFAULT_PORT, int, 0, 65535),
        max_body_bytes=_number(env, (MAX_BODY_BYTES_VAR,), DEFAULT_MAX_BODY_BYTES, int, 1),
        max_image_pixels=_number(env, (MAX_IMAGE_PIXELS_VAR,), DEFAULT_MAX_IMAGE_PIXELS, int, 1),
        header_timeout_s=_number(env, (HEADER_TIMEOUT_VAR,), DEFAULT_HEADER_TIMEOUT_S, float, 0.1, 3600.0),
        body_timeout_s=_number(env, (BODY_TIMEOUT_VAR,), DEFAULT_BODY_TIMEOUT_S, float, 0.1, 3600.0),
        torch_threads=_number(env, (TORCH_THREADS_VAR,), DEFAULT_TORCH_THREADS, int, 1),
        log_level=_log_level(env),
        capture=capture,
        variants_file=Path(env[VARIANTS_FILE_VAR].strip()) if env.get(VARIANTS_FILE_VAR, "").strip() else None,
    )
