"""The ledger of a batch run through the workflow: every image accounted for exactly once (routed, rejected
as low confidence, or failed with a named error), every execution terminal, no 5xx from the model server,
one capture record per request it served. Built from the batch's outcomes, the state machine's own list of
executions, the model server's access log and its capture files; `check_ledger` names what does not balance.
Used by benchmarks/load_ledger.py and tests/integration/test_ledger.py alike."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloud.aws import AwsTarget
from cloud.polling import PollTimeoutError, poll
from lambdas.contract import CLASSES, LOW_CONFIDENCE_ERROR, UNNAMED_LAMBDA_ERRORS, Outcome
from local_model.capture_reader import CapturedInference, read_captured_inferences
from scones.monitoring.report import OUTCOMES
from scones.workflow.batch import ImageOutcome, run_workflow_batch
from scones.workflow.execution import TERMINAL_STATUSES

# uvicorn's access log line: `INFO:     127.0.0.1:55118 - "POST /endpoints/x/invocations HTTP/1.1" 200 OK`
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3})\b')
CAPTURE_POLL_S = 0.25  # the server writes its captures every second (SCONES_CAPTURE_FLUSH_SECONDS)
CAPTURE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelServerFiles:
    """Where the model server behind the stack writes its access log and captures; None where they cannot
    be read from here (a server in another container), with the reason."""

    endpoint_name: str
    log_path: Path | None = None
    capture_destination: str | None = None
    unreadable_reason: str | None = None
    url: str | None = None  # the server itself: its /ping says when earlier captures are all written


@dataclass(frozen=True)
class AccessCounts:
    """Invocation requests of one endpoint in the access log, by HTTP status."""

    by_status: dict[int, int]

    @property
    def requests(self) -> int:
        return sum(self.by_status.values())

    @property
    def served(self) -> int:
        return self.by_status.get(200, 0)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)


def log_offset(log_path: Path | None) -> int:
    """Where the log ends now: the batch's requests are the lines after it."""
    return log_path.stat().st_size if log_path is not None and log_path.exists() else 0


def count_invocations(log_path: Path, endpoint_name: str, offset: int = 0) -> AccessCounts:
    """Requests to `/endpoints/<endpoint_name>/invocations` logged after byte `offset`, by status."""
    path = f"/endpoints/{endpoint_name}/invocations"
    with open(log_path, "rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    statuses = Counter(int(m["status"]) for m in map(ACCESS_LINE.search, text.splitlines()) if m and m["path"] == path)
    return AccessCounts(dict(sorted(statuses.items())))


def new_captures(destination: str, endpoint_name: str, seen: set[str]) -> list[CapturedInference]:
    return [r for r in read_captured_inferences(destination, endpoint_name) if r.event_id not in seen]


def wait_for_settled_captures(url: str, timeout_s: float = CAPTURE_TIMEOUT_S) -> None:
    """Wait until the server at `url` holds no capture record that is not yet written (its /ping counts
    them), so that records of requests made before a batch are not read as the batch's."""

    def buffered() -> int:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            return (json.loads(response.read() or b"{}").get("capture") or {}).get("records_buffered", 0)

    with contextlib.suppress(PollTimeoutError):  # still buffering at the deadline: the ledger shows it
        poll(buffered, lambda count: count == 0, timeout_s=timeout_s, interval_s=CAPTURE_POLL_S)


def wait_for_captures(
    read: Callable[[], list[CapturedInference]], expected: int, timeout_s: float = CAPTURE_TIMEOUT_S
) -> list[CapturedInference]:
    """Read until at least `expected` records are there (the server writes them in the background) or the
    deadline passes; what was read last either way, so a shortfall shows in the ledger."""
    try:
        return poll(read, lambda records: len(records) >= expected, timeout_s=timeout_s, interval_s=CAPTURE_POLL_S)
    except PollTimeoutError as e:
        return e.last


def list_batch_executions(sfn, state_machine_arn: str, name_prefix: str) -> dict[str, dict]:
    """The state machine's executions whose name starts with `<name_prefix>-`, by ARN, as the emulator
    (or AWS) lists them: the ground truth of what was started, whatever the batch believes."""
    executions = {}
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            if execution["name"].startswith(f"{name_prefix}-"):
                executions[execution["executionArn"]] = execution
    return executions


def choose_images(folder: Path, n: int) -> tuple[list[tuple[Path, str]], int]:
    """`n` (path, class) pairs from `folder/<class>/*.png`, the classes interleaved, cycling through the
    images: all distinct when n is at most their number. Also how many distinct images there are."""
    per_class = [[(path, label) for path in sorted((folder / label).glob("*.png"))] for label in CLASSES]
    if not all(per_class):
        raise FileNotFoundError(f"no {'/'.join(CLASSES)} PNGs under {folder}")
    interleaved = [item for group in itertools.zip_longest(*per_class) for item in group if item]
    return list(itertools.islice(itertools.cycle(interleaved), n)), len(interleaved)


def image_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Ledger:
    submitted: list[Path]  # the images handed to the batch, in order (one may repeat)
    outcomes: list[ImageOutcome]
    executions: dict[str, dict]  # as listed by Step Functions for the batch's name prefix
    access: AccessCounts | None  # None: the server's log was not readable
    captures: list[CapturedInference] | None  # the records written during the batch; None: not readable
    not_checked: dict[str, str] = field(default_factory=dict)  # ledger item -> why it was not checked

    @property
    def by_outcome(self) -> dict[str, int]:
        counts = Counter(o.outcome for o in self.outcomes)
        return {name: counts[name] for name in OUTCOMES}

    @property
    def errors(self) -> dict[str, int]:
        return dict(Counter(o.error or "(none)" for o in self.outcomes if o.outcome == Outcome.FAILED).most_common())

    @property
    def statuses(self) -> dict[str, int]:
        return dict(Counter(e["status"] for e in self.executions.values()).most_common())

    @property
    def scored(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.outcome in (Outcome.ROUTED, Outcome.REJECTED)]


def build_ledger(
    submitted: list[Path],
    outcomes: list[ImageOutcome],
    executions: dict[str, dict],
    server: ModelServerFiles,
    *,
    log_start: int = 0,
    read_captures: Callable[[int], list[CapturedInference]] | None = None,
) -> Ledger:
    """Put the sources side by side. `read_captures(expected)` returns the records written during the
    batch (it may wait for `expected` of them)."""
    ledger = Ledger(list(submitted), list(outcomes), executions, None, None)
    if server.log_path is None:
        ledger.not_checked["no 5xx"] = ledger.not_checked["requests served"] = server.unreadable_reason or "no log"
    else:
        ledger.access = count_invocations(server.log_path, server.endpoint_name, log_start)
    if server.capture_destination is None or read_captures is None:
        ledger.not_checked["captures"] = server.unreadable_reason or "the model server captures nothing"
    elif ledger.access is not None:
        ledger.captures = read_captures(ledger.access.served)
    else:
        ledger.captures = read_captures(len(ledger.scored))
    return ledger


def check_ledger(ledger: Ledger) -> list[str]:
    """Every way the ledger does not balance, one sentence each; empty when nothing is lost."""
    problems = []
    outcomes, submitted = ledger.outcomes, ledger.submitted
    # 1. Every image accounted for exactly once.
    if len(outcomes) != len(submitted):
        problems.append(f"{len(submitted)} images submitted but {len(outcomes)} outcomes")
    misplaced = sum(o.path != p for o, p in zip(outcomes, submitted, strict=False))
    if misplaced:
        problems.append(f"{misplaced} outcomes belong to another image than the one submitted in their place")
    unknown = [o.outcome for o in outcomes if o.outcome not in OUTCOMES]
    if unknown:
        problems.append(f"{len(unknown)} outcomes are none of {'/'.join(OUTCOMES)}: {sorted(set(unknown))}")
    unnamed = [o for o in outcomes if o.outcome == Outcome.FAILED and (not o.error or o.error in UNNAMED_LAMBDA_ERRORS)]
    if unnamed:
        problems.append(f"{len(unnamed)} failed images have no named error (e.g. {unnamed[0].path.name})")
    misnamed = [o for o in outcomes if o.outcome == Outcome.REJECTED and o.error != LOW_CONFIDENCE_ERROR]
    if misnamed:
        problems.append(f"{len(misnamed)} rejected images were not rejected with {LOW_CONFIDENCE_ERROR}")
    unscored = [o for o in ledger.scored if not o.scores]
    if unscored:
        problems.append(f"{len(unscored)} routed or rejected images have no scores (e.g. {unscored[0].path.name})")
    # 2. Every execution terminal, and each one belongs to exactly one image.
    arns = [o.execution_arn for o in outcomes if o.execution_arn]
    if len(arns) != len(set(arns)):
        problems.append(f"{len(arns) - len(set(arns))} executions are counted for more than one image")
    running = [arn for arn, e in ledger.executions.items() if e["status"] not in TERMINAL_STATUSES]
    if running:
        problems.append(f"{len(running)} executions are not terminal ({ledger.statuses}), e.g. {running[0]}")
    strays = set(ledger.executions) - set(arns)
    if strays:
        problems.append(f"{len(strays)} executions were started but belong to no image, e.g. {min(strays)}")
    missing = set(arns) - set(ledger.executions)
    if missing:
        problems.append(f"{len(missing)} executions of the outcomes are not listed by Step Functions")
    for o in outcomes:
        listed = ledger.executions.get(o.execution_arn or "")
        if listed and (listed["status"] == "SUCCEEDED") != (o.outcome == Outcome.ROUTED):
            problems.append(f"{o.path.name} is {o.outcome} but its execution {listed['status']}")
    # 3. No 5xx from the model server; every scored image was served at least once.
    if ledger.access is not None:
        if ledger.access.server_errors:
            problems.append(f"the model server answered {ledger.access.server_errors} requests with a 5xx")
        if ledger.access.served < len(ledger.scored):
            problems.append(
                f"{len(ledger.scored)} images were scored but the model server served {ledger.access.served} requests"
            )
    # 4. One capture record per served request, each of an image of this batch.
    if ledger.captures is not None:
        if ledger.access is not None and len(ledger.captures) != ledger.access.served:
            problems.append(
                f"{len(ledger.captures)} capture records for {ledger.access.served} served requests (want one each)"
            )
        digests = {p: image_digest(p) for p in set(submitted)}
        captured = Counter(hashlib.sha256(r.input_body).hexdigest() for r in ledger.captures)
        foreign = sum(n for digest, n in captured.items() if digest not in set(digests.values()))
        if foreign:
            problems.append(f"{foreign} capture records hold an image this batch did not send")
        uncaptured = {o.path for o in ledger.scored if digests.get(o.path) not in captured}
        if uncaptured:
            problems.append(f"{len(uncaptured)} scored images have no capture record, e.g. {min(uncaptured).name}")
    return problems


def format_ledger(ledger: Ledger, problems: list[str]) -> str:
    n = len(ledger.submitted)
    lines = [f"LEDGER: {n} images submitted, {len(set(ledger.submitted))} distinct"]
    counts = ledger.by_outcome
    lines.append(
        f"  images        {counts['routed']} routed + {counts['rejected']} rejected ({LOW_CONFIDENCE_ERROR}) + "
        f"{counts['failed']} failed = {sum(counts.values())}"
    )
    for name, count in ledger.errors.items():
        lines.append(f"                  {count} x {name}")
    running = sum(e["status"] not in TERMINAL_STATUSES for e in ledger.executions.values())
    listed = len(ledger.executions)
    lines.append(f"  executions    {listed} listed by Step Functions: {ledger.statuses}; RUNNING {running}")
    if ledger.access is not None:
        a = ledger.access
        lines.append(
            f"  model server  {a.requests} invocation requests (statuses {a.by_status}), {a.served} served, "
            f"{a.server_errors} 5xx"
        )
    if ledger.captures is not None:
        by_variant = dict(sorted(Counter(r.variant_name for r in ledger.captures).items()))
        lines.append(
            f"  captures      {len(ledger.captures)} records written during the batch, by production variant: "
            f"{by_variant}"
        )
    for item, reason in ledger.not_checked.items():
        lines.append(f"  not checked   {item}: {reason}")
    lines.append("  balance       " + ("OK: nothing lost" if not problems else f"{len(problems)} PROBLEMS"))
    lines += [f"    - {p}" for p in problems]
    return "\n".join(lines)


def run_ledgered_batch(
    aws: AwsTarget,
    outputs: dict[str, str],
    images: list[tuple[Path, str]],
    server: ModelServerFiles,
    *,
    concurrency: int,
    timeout_s: float,
    capture_timeout_s: float = CAPTURE_TIMEOUT_S,
) -> tuple[Ledger, float]:
    """Run the batch with scones.workflow.batch under a name prefix of its own and build its ledger; also the
    batch's wall-clock seconds (uploads included)."""
    prefix = f"ledger-{uuid.uuid4().hex[:8]}"
    log_start = log_offset(server.log_path)
    destination, endpoint = server.capture_destination, server.endpoint_name
    if destination and server.url:
        wait_for_settled_captures(server.url)
    seen = {r.event_id for r in read_captured_inferences(destination, endpoint)} if destination else set()
    started = time.perf_counter()
    outcomes = run_workflow_batch(
        aws,
        outputs,
        images,
        concurrency=concurrency,
        timeout_s=timeout_s,
        name_prefix=prefix,
        # StartExecution, not the upload trigger: the ledger counts the batch's executions by name prefix.
        start_executions=True,
    )
    wall_s = time.perf_counter() - started
    sfn = aws.client("stepfunctions")
    executions = list_batch_executions(sfn, outputs["StateMachineArn"], prefix)

    def read_captures(expected: int) -> list[CapturedInference]:
        return wait_for_captures(lambda: new_captures(destination, endpoint, seen), expected, capture_timeout_s)

    ledger = build_ledger(
        [path for path, _ in images],
        outcomes,
        executions,
        server,
        log_start=log_start,
        read_captures=read_captures if destination else None,
    )
    return ledger, wall_s
