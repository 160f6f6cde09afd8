"""The runtime client is pointed at the emulator's endpoint, as for every other service, and a Predictor helper
imports the SageMaker SDK."""

import base64
import json
import os

import boto3

ENDPOINT = "scones-course-endpoint"
runtime = boto3.client("sagemaker-runtime", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


def predictor():
    from sagemaker.predictor import Predictor

    return Predictor(ENDPOINT)


def lambda_handler(event, context):
    response = runtime.invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="image/png", Body=base64.b64decode(event["image_data"])
    )
    event["inferences"] = json.loads(response["Body"].read())
    return {"statusCode": 200, "body": event}
