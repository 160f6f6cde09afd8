"""CloudFormation, as deploy and teardown use it: a change set applied and waited for, a stack's status,
outputs, resources and the reasons it failed. Waits go through cloud.polling (short first waits for
emulators, backing off towards AWS's pace); boto3's waiters poll every 30 s, too slow for an emulator."""

from __future__ import annotations

import time
import uuid

from botocore.exceptions import ClientError

from cloud.aws import AwsTarget
from cloud.errors import DeployError, DeployTimeoutError, StackFailedError
from cloud.polling import PollTimeoutError, poll

STACK_POLL = {"interval_s": 0.25, "max_interval_s": 5.0}
TAGS = [{"Key": "project", "Value": "scones-unlimited"}]


def stack_status(cfn, stack_name: str) -> str | None:
    """The stack's status, None when there is no such stack."""
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    except ClientError as e:
        if "does not exist" in e.response["Error"].get("Message", ""):
            return None
        raise


def stack_outputs(target: AwsTarget, stack_name: str) -> dict[str, str]:
    stack = target.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_resource_id(cfn, stack_name: str, logical_id: str) -> str | None:
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            if resource["LogicalResourceId"] == logical_id:
                return resource.get("PhysicalResourceId") or None
    return None


def apply_change_set(
    target: AwsTarget, stack_name: str, template_body: str, parameters: list[dict], deadline: float
) -> None:
    """Create (or update) the stack through a change set and wait until it is done."""
    cfn, progress = target.client("cloudformation"), target.progress
    status = stack_status(cfn, stack_name)
    if status == "ROLLBACK_COMPLETE":
        # A stack whose creation failed can only be deleted.
        progress(f"deleting {stack_name}, whose creation failed earlier")
        cfn.delete_stack(StackName=stack_name)
        wait_for_stack(target, stack_name, deadline)
        status = None
    if status and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack_name} is busy ({status}); wait for it to finish and deploy again")
    change_set_type = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    change_set_name = f"deploy-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    change_set = cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set_name,
        ChangeSetType=change_set_type,
        TemplateBody=template_body,
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
        Tags=TAGS,
    )
    change_set_id = change_set["Id"]
    described = wait_for_change_set(cfn, change_set_id, stack_name, deadline)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_name)
            progress(f"{stack_name} is up to date")
            return
        raise StackFailedError(f"change set for {stack_name} failed: {reason}")
    progress(f"{change_set_type.lower()} {stack_name}: {len(described.get('Changes', []))} resource changes")
    cfn.execute_change_set(ChangeSetName=change_set_id, StackName=stack_name)
    wait_for_stack(target, stack_name, deadline)


def _until(deadline: float) -> float:
    return deadline - time.monotonic()


def wait_for_change_set(cfn, change_set_id: str, stack_name: str, deadline: float) -> dict:
    try:
        return poll(
            lambda: cfn.describe_change_set(ChangeSetName=change_set_id, StackName=stack_name),
            lambda described: described["Status"] in ("CREATE_COMPLETE", "FAILED"),
            timeout_s=_until(deadline),
            **STACK_POLL,
        )
    except PollTimeoutError as e:
        raise DeployTimeoutError(f"change set for {stack_name} still {e.last['Status']} at the deadline") from None


def wait_for_stack(target: AwsTarget, stack_name: str, deadline: float) -> str:
    """Wait until the stack is in a final state; return it, or raise StackFailedError with the reasons."""
    cfn = target.client("cloudformation")
    try:
        status = poll(
            lambda: stack_status(cfn, stack_name),
            lambda status: status is None or not status.endswith("_IN_PROGRESS"),
            timeout_s=_until(deadline),
            **STACK_POLL,
        )
    except PollTimeoutError as e:
        raise DeployTimeoutError(f"stack {stack_name} still {e.last} at the deadline") from None
    if status in (None, "DELETE_COMPLETE"):
        return "DELETE_COMPLETE"
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
        target.progress(f"{stack_name}: {status}")
        return status
    raise StackFailedError(f"stack {stack_name} ended {status}: {failure_reasons(cfn, stack_name)}")


def failure_reasons(cfn, stack_name: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except ClientError:
        return "(no stack events)"
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', e['ResourceStatus'])}"
        for e in events
        if e["ResourceStatus"].endswith("_FAILED")
    ]
    return "; ".join(reversed(reasons[:10])) or "(no failed resources reported)"
