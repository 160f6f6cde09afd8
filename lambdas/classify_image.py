"""Second step of the workflow: send the event's image to the SageMaker endpoint and add the class
probabilities it answers to the event (contract: lambdas/contract.py)."""

from __future__ import annotations

import base64
import binascii
import json

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from lambdas.clients import sagemaker_runtime_client_within
from lambdas.contract import (
    CLASSES,
    CLASSIFY_INPUT_SCHEMA,
    FILTER_INPUT_SCHEMA,
    EndpointError,
    EndpointUnavailableError,
    ImageEvent,
    InvalidEventError,
    image_content_type,
    read_classify_settings,
    schema_problems,
    validate_event,
)
from lambdas.logs import bind_correlation_id, handler_logger
from lambdas.metrics import put_metrics

logger = handler_logger(__name__)

# SageMaker Runtime error codes that say "try again later", not "this request is wrong".
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ModelNotReadyException",
    }
)


def handler(event: dict, context: object) -> ImageEvent:
    correlation = bind_correlation_id(event, context)
    event = validate_event(event, CLASSIFY_INPUT_SCHEMA)
    settings = read_classify_settings()
    image = decode_image_data(event["image_data"])
    # The endpoint's timeouts fit in what is left of the function's own, so a slow endpoint is named.
    remaining_s = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    inferences = invoke_endpoint(sagemaker_runtime_client_within(remaining_s), settings.endpoint_name, image)
    logger.info("classified s3://%s/%s: %s = %s", event["s3_bucket"], event["s3_key"], CLASSES, inferences)
    top = max(inferences)
    put_metrics({"Inferences": (1, "Count"), "Confidence": (top, "None")}, CLASSES[inferences.index(top)], correlation)
    return {**event, "inferences": inferences}


def decode_image_data(image_data: str) -> bytes:
    try:
        return base64.b64decode(image_data, validate=True)
    except binascii.Error as e:
        raise InvalidEventError(f"event.image_data is not valid base64: {e}") from e


def invoke_endpoint(runtime, endpoint_name: str, image: bytes) -> list[float]:
    """[p_bicycle, p_motorcycle] for one PNG or JPEG, from the endpoint named `endpoint_name`."""
    content_type = image_content_type(image, "event.image_data (decoded)")
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type, Accept="application/json", Body=image
        )
        body = response["Body"].read()
    except ClientError as e:
        error = e.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"endpoint {endpoint_name!r} answered {status} {code}: {model_error_reason(e.response) or message}"
        if code in TRANSIENT_ERROR_CODES or (status >= 500 and code != "ModelError"):
            raise EndpointUnavailableError(detail) from e
        raise EndpointError(detail) from e
    except (BotoConnectionError, HTTPClientError) as e:
        raise EndpointUnavailableError(f"endpoint {endpoint_name!r} could not be reached: {e}") from e
    except BotoCoreError as e:
        raise EndpointError(f"calling endpoint {endpoint_name!r} failed: {e}") from e
    return parse_inferences(body, endpoint_name)


def model_error_reason(response: dict) -> str:
    """The container's own named error inside a SageMaker ModelError ("InvalidImageError: ..."), if any."""
    try:
        original = json.loads(response.get("OriginalMessage") or "")
    except (json.JSONDecodeError, TypeError):
        return ""
    if not isinstance(original, dict) or not isinstance(original.get("error"), str):
        return ""
    return f"the model server refused the image: {original['error']}: {original.get('message', '')}"[:1000]


def parse_inferences(body: bytes, endpoint_name: str) -> list[float]:
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EndpointError(f"endpoint {endpoint_name!r} answered {len(body)} bytes that are not JSON") from e
    problems = schema_problems(value, FILTER_INPUT_SCHEMA["properties"]["inferences"], "answer")
    if problems:
        raise EndpointError(f"endpoint {endpoint_name!r} answered {str(value)[:200]}: " + "; ".join(problems))
    return [float(p) for p in value]
