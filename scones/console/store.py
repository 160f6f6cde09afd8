"""Everything the console reads from AWS (or an emulator), and the three things it writes, through the one
AwsTarget. Reads are made only when a page asks: nothing polls by itself, so with no page open the console
sends no request. The executions list is cached for REFRESH_S, so many open pages cost one listing. The list
answers from ListExecutions alone (name, status, start and stop are in it); what only DescribeExecution
knows (the S3 key, a failure's error and message) is read behind it, newest first, and kept: an execution
that has ended never changes, so it is described once, and a row says while it is still being read."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from botocore.exceptions import ClientError, ParamValidationError

from cloud.aws import AwsTarget
from cloud.solution import SOLUTION_MACHINE_PREFIX
from lambdas.contract import CLASSES, InvalidEventError, NotAnImageError, error_message, error_name, image_content_type
from lambdas.contract import outcome_of as workflow_outcome
from scones.workflow.execution import image_key, start_execution, upload_image

logger = logging.getLogger(__name__)

REFRESH_S = 0.5  # the executions list is listed again at most this often, however many pages poll it
SOLUTIONS_REFRESH_S = 5.0  # the state machines are listed again (for `scones solution run`'s) at most this often
MAX_LISTED = 2000  # executions listed per state machine (newest first)
DESCRIBE_THREADS = 8  # executions described at once, behind the list, when many are new
LOG_SLACK = timedelta(seconds=5)  # log lines are looked for from this long before the start ...
LOG_AFTER = timedelta(seconds=60)  # ... to this long after the stop
MAX_LOG_LINES = 200
IMAGE_MACHINE, BATCH_MACHINE = "image", "batch"
MACHINE_OUTPUTS = {IMAGE_MACHINE: "StateMachineArn", BATCH_MACHINE: "BatchStateMachineArn"}
FUNCTION_OUTPUTS = ("SerializeImageDataFunctionName", "ClassifyImageFunctionName", "FilterLowConfidenceFunctionName")
CONSOLE_NAME_PREFIX = "console"
MAX_IMAGE_BYTES = (
    6 * 1024 * 1024
)  # what the model server accepts: a larger upload is refused, a larger object not shown


class ConsoleActionError(Exception):
    """A write action was refused or failed; the message is shown to the user."""


@dataclass
class ExecutionRow:
    """One execution as the list shows it."""

    machine: str  # IMAGE_MACHINE or BATCH_MACHINE
    arn: str
    name: str
    status: str
    start: datetime
    stop: datetime | None = None
    key: str = ""  # the image's S3 key; s3://bucket/prefix for a batch
    outcome: str = ""  # routed, rejected, failed, running, done
    error: str | None = None  # the named error of a failed execution
    message: str = ""  # its message
    described_status: str | None = None  # the status DescribeExecution saw; None: not described yet

    @property
    def reading(self) -> bool:
        """True while what only DescribeExecution tells (key, error) is not known for this status yet."""
        if self.described_status is None:
            return True
        # A run that succeeded tells nothing new; one that failed has an error to read.
        return self.described_status != self.status and self.status != "SUCCEEDED"

    @property
    def seconds(self) -> float | None:
        return (self.stop - self.start).total_seconds() if self.stop else None


def outcome_of(machine: str, status: str, error: str | None) -> str:
    if status == "RUNNING":
        return "running"
    if machine == BATCH_MACHINE:
        return "done" if status == "SUCCEEDED" else "failed"
    return workflow_outcome(status, error, None).value  # `error` is named already (error_name)


def key_of(machine: str, event: object) -> str:
    if not isinstance(event, dict):
        return ""
    if machine == BATCH_MACHINE:
        return f"s3://{event.get('bucket', '')}/{event.get('prefix', '')}"
    return str(event.get("s3_key", ""))


def parse_input(text: str | None) -> object:
    try:
        return json.loads(text or "null")
    except ValueError:
        return text


@dataclass
class ConsoleStore:
    aws: AwsTarget
    outputs: dict[str, str]  # the deployed stack's
    allow_writes: bool = True
    _rows: dict[str, ExecutionRow] = field(default_factory=dict, init=False)
    _listed: list[str] = field(default_factory=list, init=False)
    _listed_at: float = field(default=float("-inf"), init=False)
    describe_threads: int = DESCRIBE_THREADS
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _queued: set[str] = field(default_factory=set, init=False)  # ARNs waiting to be described
    _describer: ThreadPoolExecutor | None = field(default=None, init=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _solutions: dict[str, str] = field(default_factory=dict, init=False)  # solution-* state machines, by name
    _solutions_listed_at: float = field(default=float("-inf"), init=False)
    requests: int = field(default=0, init=False)  # AWS calls made, for the benchmark and the tests

    @property
    def sfn(self):
        return self.aws.client("stepfunctions")

    @property
    def s3(self):
        return self.aws.client("s3")

    def machines(self) -> dict[str, str]:
        """The stack's state machines, then those `scones solution run` created (named solution-*), by name."""
        own = {m: self.outputs[o] for m, o in MACHINE_OUTPUTS.items() if self.outputs.get(o)}
        return {**own, **{name: arn for name, arn in self._solutions.items() if arn not in own.values()}}

    def _list_solutions(self) -> None:
        if time.monotonic() - self._solutions_listed_at < SOLUTIONS_REFRESH_S:
            return
        found = {}
        try:
            for page in self.sfn.get_paginator("list_state_machines").paginate():
                self._count()
                found.update(
                    {
                        m["name"]: m["stateMachineArn"]
                        for m in page["stateMachines"]
                        if m["name"].startswith(SOLUTION_MACHINE_PREFIX)
                    }
                )
        except ClientError as e:  # the stack's own machines are listed all the same
            logger.debug("ListStateMachines failed (%s): solution state machines not listed this time", e)
            return
        self._solutions = found
        self._solutions_listed_at = time.monotonic()

    def machine_of(self, state_machine_arn: str) -> str:
        return next((m for m, arn in self.machines().items() if arn == state_machine_arn), IMAGE_MACHINE)

    # --- the executions list --------------------------------------------------------------------------

    def executions(self) -> list[ExecutionRow]:
        """Every execution of both state machines, newest first (listed again at most every REFRESH_S). Rows
        not described yet say so (`reading`); they are described in the background and filled in."""
        with self._lock:
            if time.monotonic() - self._listed_at >= REFRESH_S:
                self._refresh()
                self._listed_at = time.monotonic()
            return [self._rows[arn] for arn in self._listed]

    @property
    def reading(self) -> int:
        """How many executions are waiting to be described."""
        with self._lock:
            return len(self._queued)

    def _count(self, calls: int = 1) -> None:
        with self._count_lock:
            self.requests += calls

    def _refresh(self) -> None:
        listed, stale = [], []
        self._list_solutions()
        for machine, arn in self.machines().items():
            count = 0
            for page in self.sfn.get_paginator("list_executions").paginate(
                stateMachineArn=arn, PaginationConfig={"PageSize": 1000}
            ):
                self._count()
                for execution in page["executions"]:
                    row = self._rows.get(execution["executionArn"])
                    if row is None:
                        row = row_of_listing(machine, execution)
                        self._rows[row.arn] = row
                    elif row.status != execution["status"]:  # it ended (or was redriven) since
                        row = updated_from_listing(row, execution)
                        self._rows[row.arn] = row
                    if row.reading and row.arn not in self._queued:
                        stale.append(row.arn)
                    listed.append(row.arn)
                    count += 1
                if count >= MAX_LISTED:
                    break
        self._listed = sorted(listed, key=lambda a: self._rows[a].start, reverse=True)
        if stale:
            if self._describer is None:
                self._describer = ThreadPoolExecutor(self.describe_threads, thread_name_prefix="console-describe")
            rank = {arn: i for i, arn in enumerate(self._listed)}
            for arn in sorted(stale, key=rank.__getitem__):  # newest first: the top of the page
                self._queued.add(arn)
                self._describer.submit(self._describe, arn)

    def _describe(self, arn: str) -> None:
        try:
            self._count()
            described = self.sfn.describe_execution(executionArn=arn)
        except Exception as e:  # a throttle or a blip: the next listing queues it again
            logger.debug("DescribeExecution %s failed (%s): queued again at the next listing", arn, e)
            with self._lock:
                self._queued.discard(arn)
            return
        with self._lock:
            listed = self._rows.get(arn)
            row = row_of(listed.machine if listed else self.machine_of(described["stateMachineArn"]), described)
            self._rows[arn] = row
            self._queued.discard(arn)

    def wait_until_read(self, timeout_s: float) -> bool:
        """Block until every listed execution is described (for the benchmark and the tests)."""
        deadline = time.monotonic() + timeout_s
        while self.reading:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Drop what is still queued (the console is stopping)."""
        if self._describer is not None:
            self._describer.shutdown(wait=True, cancel_futures=True)
            self._describer = None
        with self._lock:
            self._queued.clear()

    # --- one execution --------------------------------------------------------------------------------

    def execution(self, arn: str) -> dict:
        self._count()
        return self.sfn.describe_execution(executionArn=arn)

    def definition(self, arn: str) -> str:
        """The definition the execution ran (DescribeStateMachineForExecution): the deployed one."""
        self._count()
        return self.sfn.describe_state_machine_for_execution(executionArn=arn)["definition"]

    def history(self, arn: str) -> list[dict]:
        events = []
        for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            self._count()
            events.extend(page["events"])
        return events

    def map_runs(self, arn: str) -> list[dict]:
        """The execution's Map Runs, described (counts of items and of their executions)."""
        self._count()
        runs = self.sfn.list_map_runs(executionArn=arn).get("mapRuns", [])
        described = []
        for run in runs:
            self._count()
            found = self.sfn.describe_map_run(mapRunArn=run["mapRunArn"])
            found.pop("ResponseMetadata", None)
            described.append(found)
        return described

    def batch_summary(self, location: str) -> dict | None:
        """The summary the batch wrote (s3://bucket/key), or None when it is not there."""
        bucket, _, key = location.removeprefix("s3://").partition("/")
        try:
            self._count()
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return json.loads(body)
        except (ClientError, ValueError):
            return None

    def image(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The image an execution classified, with its content type (PNG or JPEG only), or None."""
        try:
            self._count()
            body = self.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_IMAGE_BYTES}")["Body"].read()
        except ClientError:
            return None
        if len(body) > MAX_IMAGE_BYTES:
            return None
        try:
            return body, image_content_type(body)
        except NotAnImageError:  # not an image we would decode: nothing is shown
            return None

    def log_lines(self, correlation_id: str, start: datetime, stop: datetime | None) -> list[dict]:
        """The functions' JSON log lines that carry `correlation_id`, oldest first."""
        logs = self.aws.client("logs")
        start_ms = int((start - LOG_SLACK).timestamp() * 1000)
        end_ms = int(((stop or datetime.now(start.tzinfo)) + LOG_AFTER).timestamp() * 1000)
        found = []
        for output in FUNCTION_OUTPUTS:
            function = self.outputs.get(output)
            if not function:
                continue
            try:
                pages = logs.get_paginator("filter_log_events").paginate(
                    logGroupName=f"/aws/lambda/{function}", startTime=start_ms, endTime=end_ms
                )
                for page in pages:
                    self._count()
                    for event in page["events"]:
                        line = parse_log_line(event.get("message", ""))
                        if line is not None and line.get("correlation_id") == correlation_id:
                            found.append({**line, "function": line.get("function") or function})
            except ClientError:  # no log group yet: the function has not run
                continue
        found.sort(key=lambda line: str(line.get("timestamp", "")))
        return found[:MAX_LOG_LINES]

    # --- the writes -----------------------------------------------------------------------------------

    def _check_writes(self) -> None:
        if not self.allow_writes:
            raise ConsoleActionError("this console is read-only (--target aws without --allow-writes)")

    def upload(self, image: bytes) -> dict:
        """Put an image where the upload trigger watches, so the trigger starts an execution; on a stack
        without the trigger, upload it elsewhere and start the execution here."""
        self._check_writes()
        if len(image) > MAX_IMAGE_BYTES:
            raise ConsoleActionError(f"the image is {len(image)} bytes, more than the {MAX_IMAGE_BYTES} accepted")
        try:
            image_content_type(image)
        except NotAnImageError as e:
            raise ConsoleActionError(f"not an image the workflow accepts: {e}") from e
        bucket, prefix = self.outputs["ImageBucketName"], self.outputs.get("UploadTriggerPrefix")
        if prefix:
            key = upload_image(self.s3, bucket, image, key=image_key(image, prefix))
            return {"bucket": bucket, "key": key, "execution_arn": None, "via": "upload trigger"}
        key = upload_image(self.s3, bucket, image)
        arn = start_execution(
            self.sfn,
            self.outputs[MACHINE_OUTPUTS[IMAGE_MACHINE]],
            {"s3_bucket": bucket, "s3_key": key},
            CONSOLE_NAME_PREFIX,
        )
        return {"bucket": bucket, "key": key, "execution_arn": arn, "via": "StartExecution (no upload trigger)"}

    def start(self, machine: str, event: object) -> str:
        self._check_writes()
        arn = self.machines().get(machine)
        if arn is None:
            raise ConsoleActionError(f"no state machine {machine!r} in this stack")
        if not isinstance(event, dict):
            raise ConsoleActionError("the input must be a JSON object")
        try:
            return start_execution(self.sfn, arn, event, CONSOLE_NAME_PREFIX)
        except (InvalidEventError, ClientError) as e:
            raise ConsoleActionError(str(e)) from e

    def rerun(self, arn: str) -> dict:
        """RedriveExecution where the emulator implements it (and the execution is redrivable); otherwise a
        new execution with the same input. Says which, and why."""
        self._check_writes()
        try:
            described = self.execution(arn)
        except (ClientError, ParamValidationError) as e:
            raise ConsoleActionError(f"no execution {arn!r} to run again: {e}") from e
        if described["status"] not in ("FAILED", "TIMED_OUT", "ABORTED"):
            raise ConsoleActionError(f"only a failed execution is run again; this one is {described['status']}")
        try:
            self.sfn.redrive_execution(executionArn=arn)
            return {"execution_arn": arn, "how": "RedriveExecution", "why": "the emulator redrove it"}
        except ClientError as e:
            why = f"RedriveExecution answered {e.response['Error'].get('Code')}: {e.response['Error'].get('Message')}"
        machine_arn = described["stateMachineArn"]
        event = parse_input(described.get("input"))
        if not isinstance(event, dict):
            raise ConsoleActionError("the execution's input is not a JSON object: it cannot be sent again")
        event = {k: v for k, v in event.items() if k != "id"}  # the new execution gets its own correlation id
        new = start_execution(self.sfn, machine_arn, event, "rerun")
        return {"execution_arn": new, "how": "a new execution with the same input", "why": why}


def row_of_listing(machine: str, listed: dict) -> ExecutionRow:
    """A row from ListExecutions alone: no key, and a failure not named yet."""
    return ExecutionRow(
        machine=machine,
        arn=listed["executionArn"],
        name=listed["name"],
        status=listed["status"],
        start=listed["startDate"],
        stop=listed.get("stopDate"),
        outcome=listed_outcome(machine, listed["status"]),
    )


def updated_from_listing(row: ExecutionRow, listed: dict) -> ExecutionRow:
    """A described row whose status the listing shows changed: the new status and stop now; a failure's error
    when it is described again."""
    status = listed["status"]
    outcome = listed_outcome(row.machine, status)
    return replace(row, status=status, stop=listed.get("stopDate"), outcome=outcome, error=None, message="")


def listed_outcome(machine: str, status: str) -> str:
    """The outcome the status alone tells; "" for an image execution that ended otherwise than SUCCEEDED: it was
    rejected as low confidence or failed, which its error (DescribeExecution) tells."""
    if status in ("RUNNING", "SUCCEEDED") or machine == BATCH_MACHINE:
        return outcome_of(machine, status, None)
    return ""


def row_of(machine: str, described: dict) -> ExecutionRow:
    error = cause = None
    if described["status"] != "SUCCEEDED":
        error, cause = described.get("error"), described.get("cause")
    named = error_name(error, cause) if error else None
    return ExecutionRow(
        machine=machine,
        arn=described["executionArn"],
        name=described["name"],
        status=described["status"],
        start=described["startDate"],
        stop=described.get("stopDate"),
        key=key_of(machine, parse_input(described.get("input"))),
        outcome=outcome_of(machine, described["status"], named),
        error=named,
        message=error_message(cause) if error else "",
        described_status=described["status"],
    )


def parse_log_line(message: str) -> dict | None:
    text = message.strip()
    if not text.startswith("{"):
        return None
    try:
        line = json.loads(text)
    except ValueError:
        return None
    return line if isinstance(line, dict) else None


def scores_of(runs: dict, classify_state: str = "Classify Image") -> list[float] | None:
    """[p_bicycle, p_motorcycle] from the Classify Image state's output (or the filter's input)."""
    for name, attribute in ((classify_state, "output"), ("Filter Low Confidence", "input")):
        run = runs.get(name)
        value = getattr(run, attribute, None) if run else None
        if isinstance(value, dict) and isinstance(value.get("inferences"), list):
            scores = value["inferences"]
            if len(scores) == len(CLASSES) and all(isinstance(s, int | float) for s in scores):
                return [float(s) for s in scores]
    return None
