"""Step 1: fetch the image from S3 and base64-encode it into the event."""

import base64

import boto3

s3 = boto3.client("s3")


def lambda_handler(event, context):
    obj = s3.get_object(Bucket=event["s3_bucket"], Key=event["s3_key"])
    event["image_data"] = base64.b64encode(obj["Body"].read()).decode("utf-8")
    event["inferences"] = []
    return {"statusCode": 200, "body": event}
