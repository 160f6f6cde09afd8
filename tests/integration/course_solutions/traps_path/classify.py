"""Step 2: ask the endpoint for the class probabilities."""

import base64
import json
import os

import boto3

ENDPOINT = os.environ.get("ENDPOINT_NAME", "scones-course-endpoint")
runtime = boto3.client("sagemaker-runtime")


def lambda_handler(event, context):
    response = runtime.invoke_endpoint(
        EndpointName=ENDPOINT,
        ContentType="image/png",
        Accept="application/json",
        Body=base64.b64decode(event["image_data"]),
    )
    event["inferences"] = json.loads(response["Body"].read())
    return {"statusCode": 200, "body": event}
