"""The serializer returns bytes: fine in a notebook, not as a Lambda result."""

import base64
import json

import boto3

ENDPOINT = "image-classification-2025-06-01-10-00-00-000"


def serializer(event, context):
    image = boto3.client("s3").get_object(Bucket=event["s3_bucket"], Key=event["s3_key"])["Body"].read()
    return {"image_data": base64.b64encode(image), "s3_bucket": event["s3_bucket"], "s3_key": event["s3_key"]}


def classifier(event, context):
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="image/png", Body=base64.b64decode(event["image_data"])
    )
    return {**event, "inferences": json.loads(answer["Body"].read())}


def filter_inferences(event, context):
    if max(event["inferences"]) < 0.93:
        raise ValueError("THRESHOLD_CONFIDENCE_NOT_MET")
    return event
