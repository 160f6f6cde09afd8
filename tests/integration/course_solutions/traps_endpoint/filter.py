"""Step 3: only confident inferences go on."""

THRESHOLD = 0.93


class ThresholdConfidenceNotMet(Exception):
    pass


def lambda_handler(event, context):
    if max(event["inferences"]) < THRESHOLD:
        raise ThresholdConfidenceNotMet(f"top score {max(event['inferences']):.3f} is below {THRESHOLD}")
    return {"statusCode": 200, "body": event}
