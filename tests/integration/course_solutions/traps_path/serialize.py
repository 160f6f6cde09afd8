"""Returns the event itself, not {"statusCode", "body"}: the definition's $.Payload.body selects nothing."""

import base64

import boto3


def lambda_handler(event, context):
    obj = boto3.client("s3").get_object(Bucket=event["s3_bucket"], Key=event["s3_key"])
    return {
        "image_data": base64.b64encode(obj["Body"].read()).decode(),
        "s3_bucket": event["s3_bucket"],
        "s3_key": event["s3_key"],
        "inferences": [],
    }
