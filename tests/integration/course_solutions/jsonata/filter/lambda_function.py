import os

THRESHOLD = float(os.environ.get("THRESHOLD", "0.93"))


def lambda_handler(event, context):
    if max(event["inferences"]) >= THRESHOLD:
        return event
    raise ValueError("THRESHOLD_CONFIDENCE_NOT_MET")
