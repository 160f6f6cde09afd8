"""Compare the two emulators on the project's workflow: start-up time, resident memory, execution latency.

    .venv/bin/python benchmarks/emulators.py [--executions 20] [--emulator ministack --emulator localstack]

For each emulator: start it (ministack through scones/local/emulator.py, LocalStack through
tests/localstack/run.py), deploy the stack with cloud/deploy.py, upload one PNG, run one cold
execution (it starts the three Lambda environments) and then N warm ones, one at a time, each
timed from StartExecution until DescribeExecution reports it finished. Memory is the resident
set of the emulator's process tree (its Lambda processes included), summed, so shared pages count
more than once. SageMaker Runtime is a stub answering fixed scores at once: the model server
costs the same on both emulators and benchmarks/serve_latency.py measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
from PIL import Image

from cloud.aws import AwsTarget
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from scones.local.emulator import Ministack, local_aws_environment
from scones.monitoring.report import percentile

ROOT = Path(__file__).resolve().parents[1]

EXECUTION_DEADLINE_S = 120
POLL_INTERVAL_S = 0.05  # bounds the latency's resolution; DescribeExecution costs each emulator the same
STUB_SCORES = [0.97, 0.03]  # a confident bicycle: the execution runs all three functions and succeeds


def load_localstack_runner():
    spec = importlib.util.spec_from_file_location("localstack_run", ROOT / "tests" / "localstack" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Result:
    emulator: str
    startup_s: float
    idle_rss_mib: float
    deploy_s: float
    cold_execution_s: float
    warm_execution_s: list[float]
    loaded_rss_mib: float


# --- Process memory (Linux /proc) ------------------------------------------------------------


def process_tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name, in parentheses, may contain spaces: the parent pid follows the last ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def resident_mib(root_pid: int) -> float:
    total_kib = 0
    for pid in process_tree(root_pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def child_pid_running(module: str) -> int:
    """The pid of this process's child running `python -m <module>`."""
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", module.encode()]:
                return pid
    raise RuntimeError(f"no child process runs {module}")


# --- Emulators -------------------------------------------------------------------------------


@contextlib.contextmanager
def started_ministack() -> Iterator[tuple[str, int, float]]:
    started = time.monotonic()
    with Ministack() as emulator:
        yield emulator.endpoint_url, child_pid_running("ministack"), time.monotonic() - started


@contextlib.contextmanager
def started_localstack() -> Iterator[tuple[str, int, float]]:
    runner = load_localstack_runner()
    runner.ensure_installed()  # outside the timing: a first run installs LocalStack
    with runner.localstack() as running:
        yield running.endpoint, running.process.pid, running.startup_s


EMULATORS = {"ministack": started_ministack, "localstack": started_localstack}


@contextlib.contextmanager
def aws_environment(endpoint: str) -> Iterator[None]:
    """Points boto3 at the emulator for the duration (deploy.py and boto3 read the environment)."""
    names = [name for name in os.environ if name.startswith("AWS_")]
    saved = {name: os.environ.pop(name) for name in names}
    os.environ.update(local_aws_environment(endpoint))
    try:
        yield
    finally:
        for name in local_aws_environment(endpoint):
            os.environ.pop(name, None)
        os.environ.update(saved)


# --- Workflow --------------------------------------------------------------------------------


@contextlib.contextmanager
def stub_model_endpoint() -> Iterator[str]:
    """A SageMaker Runtime stand-in on a loopback port that answers every InvokeEndpoint with STUB_SCORES."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps(STUB_SCORES).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (32, 32), (200, 30, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def run_execution(sfn, state_machine_arn: str, event: dict) -> float:
    """Seconds from StartExecution until the execution is seen SUCCEEDED; anything else is an error."""
    started = time.perf_counter()
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=uuid.uuid4().hex, input=json.dumps(event))[
        "executionArn"
    ]
    while time.perf_counter() - started < EXECUTION_DEADLINE_S:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            if execution["status"] != "SUCCEEDED":
                raise RuntimeError(f"execution {arn} {execution['status']}: {execution.get('cause', '')[:500]}")
            return time.perf_counter() - started
        time.sleep(POLL_INTERVAL_S)
    sfn.stop_execution(executionArn=arn)
    raise RuntimeError(f"execution {arn} still RUNNING after {EXECUTION_DEADLINE_S} s")


def measure(emulator: str, model_url: str, executions: int) -> Result:
    with EMULATORS[emulator]() as (endpoint, pid, startup_s), aws_environment(endpoint):
        idle_rss = resident_mib(pid)
        stack_name = f"bench-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        outputs = deploy_stack(DeployConfig(stack_name=stack_name, model_endpoint_url=model_url), AwsTarget())
        deploy_s = time.monotonic() - started
        try:
            boto3.client("s3").put_object(Bucket=outputs["ImageBucketName"], Key="bench.png", Body=png_bytes())
            event = {"s3_bucket": outputs["ImageBucketName"], "s3_key": "bench.png"}
            sfn = boto3.client("stepfunctions")
            cold = run_execution(sfn, outputs["StateMachineArn"], event)
            warm = [run_execution(sfn, outputs["StateMachineArn"], event) for _ in range(executions)]
            loaded_rss = resident_mib(pid)
        finally:
            teardown_stack(AwsTarget(), stack_name)
    return Result(emulator, startup_s, idle_rss, deploy_s, cold, warm, loaded_rss)


def print_table(results: list[Result], executions: int) -> None:
    header = (
        f"{'emulator':<11} {'start-up s':>10} {'RSS idle MiB':>12} {'deploy s':>9} {'cold exec s':>11} "
        f"{'warm p50 ms':>11} {'warm p95 ms':>11} {'warm max ms':>11} {'RSS after MiB':>13}"
    )
    print(f"\n{executions} warm executions each, one at a time; latency = StartExecution until seen finished")
    print(header)
    print("-" * len(header))
    for r in results:
        warm_ms = sorted(s * 1000 for s in r.warm_execution_s)
        print(
            f"{r.emulator:<11} {r.startup_s:>10.1f} {r.idle_rss_mib:>12.0f} {r.deploy_s:>9.1f} "
            f"{r.cold_execution_s:>11.2f} {percentile(warm_ms, 50):>11.0f} {percentile(warm_ms, 95):>11.0f} "
            f"{warm_ms[-1]:>11.0f} "
            f"{r.loaded_rss_mib:>13.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=20, help="warm executions per emulator")
    parser.add_argument("--emulator", action="append", choices=sorted(EMULATORS), help="default: both")
    args = parser.parse_args(argv)
    results = []
    with stub_model_endpoint() as model_url:
        for emulator in args.emulator or list(EMULATORS):
            print(f"measuring {emulator} ...", file=sys.stderr)
            results.append(measure(emulator, model_url, args.executions))
    print_table(results, args.executions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
