"""The three steps in one file, each result wrapped as {"statusCode": 200, "body": {...}}."""

import base64
import json

import boto3

s3 = boto3.client("s3")
runtime = boto3.client("sagemaker-runtime")

ENDPOINT = "image-classification-2025-06-01-10-00-00-000"
THRESHOLD = 0.93


def serialize_image_data(event, context):
    key, bucket = event["s3_key"], event["s3_bucket"]
    image = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return {
        "statusCode": 200,
        "body": {
            "image_data": base64.b64encode(image).decode("utf-8"),
            "s3_bucket": bucket,
            "s3_key": key,
            "inferences": [],
        },
    }


def classify_image(event, context):
    body = event["body"]
    image = base64.b64decode(body["image_data"])
    response = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=image)
    body["inferences"] = json.loads(response["Body"].read().decode("utf-8"))
    return {"statusCode": 200, "body": body}


def filter_low_confidence(event, context):
    inferences = event["body"]["inferences"]
    if max(inferences) < THRESHOLD:
        raise Exception("THRESHOLD_CONFIDENCE_NOT_MET")
    return {"statusCode": 200, "body": event["body"]}
