import base64
import json

import boto3

ENDPOINT_NAME = "bike-classifier"


def lambda_handler(event, context):
    runtime = boto3.client("runtime.sagemaker")
    answer = runtime.invoke_endpoint(
        EndpointName=ENDPOINT_NAME, ContentType="image/png", Body=base64.b64decode(event["image_data"])
    )
    return {**event, "inferences": json.loads(answer["Body"].read())}
