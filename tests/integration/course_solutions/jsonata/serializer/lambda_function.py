import base64

import boto3


def lambda_handler(event, context):
    image = boto3.client("s3").get_object(Bucket=event["s3_bucket"], Key=event["s3_key"])["Body"].read()
    return {**event, "image_data": base64.b64encode(image).decode("ascii"), "inferences": []}
