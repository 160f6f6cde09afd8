"""From a file's save to the first execution that runs the new code, under `scones up --watch` (issue 22).

    .venv/bin/python benchmarks/watch_latency.py [--rounds 5]
    .venv/bin/python tests/localstack/run.py -- .venv/bin/python benchmarks/watch_latency.py   # on LocalStack

Starts `scones up --watch --threshold 0` on a copy of the sources (the embedded ministack, or the emulator
AWS_ENDPOINT_URL names) with an untrained width-8 model (threshold 0: every image is routed, whatever the
weights). Each round saves an edit and at once runs executions one after another, as a user rerunning the
workflow would, until one runs the new code: "save -> new code ran" is the end of that execution (the issue's
measure; an execution that started just before the update landed runs the old code and delays it by up to one
execution). "save -> applied" is when `up` printed that the update was done, which includes waiting for the
platform to report the function updated (LastUpdateStatus). A handler round changes what
lambdas/filter_low_confidence.py returns (the output shows the round's number), so its first new execution
includes that function's cold start; an ASL round puts a new Pass state first in
statemachine/image_classification.asl.json (the execution's history shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3

from local_model.artifact import pack_model_tar
from scones.local.emulator import local_aws_environment
from scones.local.state_file import read_state
from scones.monitoring.report import percentile
from scones.workflow.execution import start_execution, upload_image, wait_for_execution

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared" / "data" / "cifar100-bikes" / "train" / "bicycle" / "bike_s_000682.png"
SOURCE_PARTS = ("lambdas", "statemachine", "cloud/template.yaml")
READY = "Ctrl-C stops everything."
DEADLINE_S = 120
RETURN_EVENT = "    return event\n\n\ndef check_confidence"


def random_model_dir(width: int) -> Path:
    from local_model.classifier import ModelMeta, save_model_dir
    from local_model.model import ResNet9

    model_dir = Path(tempfile.mkdtemp(prefix="scones-bench-model-"))
    save_model_dir(model_dir, [ResNet9(width=width)], ModelMeta(width=width))
    return model_dir


class Up:
    """`scones up --watch` in a subprocess, its lines read as they come, each with its arrival time."""

    def __init__(self, workdir: Path, sources: Path):
        command = [sys.executable, "-m", "scones", "up", "--watch", "--threshold", "0", "--workdir", str(workdir)]
        command += ["--source-dir", str(sources), "--stack-name", f"bench-watch-{uuid.uuid4().hex[:8]}"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put((time.perf_counter(), line.rstrip("\n")))
        self.lines.put((time.perf_counter(), None))

    def wait_for(self, wanted: str) -> tuple[float, str]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            arrived, line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError("scones up ended")
            print(f"  | {line}", file=sys.stderr)
            if wanted in line:
                return arrived, line

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=120)


def session_for_emulator(endpoint_url: str) -> dict:
    environment = local_aws_environment(endpoint_url)
    return {
        "aws_access_key_id": environment["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": environment["AWS_SECRET_ACCESS_KEY"],
        "region_name": environment["AWS_DEFAULT_REGION"],
    }


def run(sfn, arn: str, event: dict):
    execution = start_execution(sfn, arn, event, name_prefix="bench")
    return wait_for_execution(sfn, execution, timeout_s=DEADLINE_S, poll_s=0.02, max_poll_s=0.05)


def until_new_code(runs_new_code, sfn, arn: str, event: dict) -> tuple[float, float]:
    """Executions one after another until one runs the new code: (when it ended, how long it took)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = run(sfn, arn, event)
        ended = time.perf_counter()
        assert result.status == "SUCCEEDED", result.summary()
        if runs_new_code(result):
            return ended, result.seconds
    raise RuntimeError(f"no execution ran the new code within {DEADLINE_S} s")


def first_state(sfn, execution_arn: str) -> str:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=100)["events"]
    return next(e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="edits of each kind")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="scones-bench-watch-"))
    sources, workdir = folder / "src", folder / "work"
    for part in SOURCE_PARTS:
        (sources / part).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy2
        copy(ROOT / part, sources / part)
    pack_model_tar(random_model_dir(8), workdir / "model" / "model.tar.gz")
    up = Up(workdir, sources)
    results: dict[str, list[tuple[float, float, float]]] = {"handler": [], "ASL": []}
    try:
        up.wait_for(READY)
        state = read_state(workdir)
        session = boto3.Session(**session_for_emulator(state.aws_endpoint_url))
        sfn = session.client("stepfunctions", endpoint_url=state.aws_endpoint_url)
        s3 = session.client("s3", endpoint_url=state.aws_endpoint_url)
        bucket, arn = state.outputs["ImageBucketName"], state.outputs["StateMachineArn"]
        event = {"s3_bucket": bucket, "s3_key": upload_image(s3, bucket, IMAGE.read_bytes())}
        for _ in range(3):  # warm: every function started once
            assert run(sfn, arn, event).status == "SUCCEEDED"

        handler = sources / "lambdas" / "filter_low_confidence.py"
        original = handler.read_text()
        for n in range(1, args.rounds + 1):
            returned = RETURN_EVENT.replace("event\n", f'{{**event, "bench": {n}}}\n')
            handler.write_text(original.replace(RETURN_EVENT, returned))
            saved = time.perf_counter()
            ran, execution = until_new_code(lambda r, n=n: (r.output or {}).get("bench") == n, sfn, arn, event)
            applied, _ = up.wait_for("watch: ")
            results["handler"].append((applied - saved, ran - saved, execution))

        definition_path = sources / "statemachine" / "image_classification.asl.json"
        definition = json.loads(definition_path.read_text())
        first = definition["StartAt"]
        for n in range(1, args.rounds + 1):
            wanted = f"Bench Round {n}"
            edited = dict(definition, StartAt=wanted)
            edited["States"] = {wanted: {"Type": "Pass", "Next": first}, **definition["States"]}
            definition_path.write_text(json.dumps(edited, indent=2))
            saved = time.perf_counter()
            ran, execution = until_new_code(lambda r, w=wanted: first_state(sfn, r.execution_arn) == w, sfn, arn, event)
            applied, _ = up.wait_for("watch: ")
            results["ASL"].append((applied - saved, ran - saved, execution))
    finally:
        up.stop()
        shutil.rmtree(folder, ignore_errors=True)

    emulator = "LocalStack" if os.environ.get("AWS_ENDPOINT_URL") else "ministack (embedded)"
    print(f"\n{emulator}, {args.rounds} rounds each, load average {os.getloadavg()[0]:.1f}")
    print("edit       save->applied p50/max   save->new code ran p50/max   that execution p50")
    for kind, rows in results.items():
        applied, ran, execution = ([row[i] for row in rows] for i in range(3))
        print(
            f"{kind:<10} {percentile(applied, 50) * 1000:6.0f} / {max(applied) * 1000:5.0f} ms"
            f"        {percentile(ran, 50) * 1000:6.0f} / {max(ran) * 1000:5.0f} ms"
            f"             {percentile(execution, 50) * 1000:5.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
