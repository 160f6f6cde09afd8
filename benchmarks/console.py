"""The console's speed: the executions page with N executions listed (cold: a console's first view, answered
from ListExecutions while every execution is described behind it, on --repeats fresh consoles, and how long
until every row is read; warm: listed again), an execution page with its history, and the requests sent to
the emulator with no page open (before the first view, and after every row is read). Runs on an embedded
ministack with a stack deployed, no model: the executions fail at the classifier (nothing listens where it
calls), which is fine for timing the pages. Prints the load average, since the machine may be shared.

    python benchmarks/console.py --executions 1000
"""

from __future__ import annotations

import argparse
import os
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from emulated import aws_environment_for

from cloud.aws import AwsTarget
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from scones.console.server import ConsoleServer
from scones.local.emulator import Ministack
from scones.local.supervisor import free_port
from scones.monitoring.report import percentile
from scones.workflow.execution import start_execution, wait_for_execution


def fetch(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, body


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with Ministack() as emulator, aws_environment_for(emulator.endpoint_url):
        aws = AwsTarget(timeout_s=600)
        name = f"scones-bench-{uuid.uuid4().hex[:6]}"
        config = DeployConfig(
            stack_name=name,
            model_endpoint_name="scones-image-classifier",
            model_endpoint_url=f"http://127.0.0.1:{free_port()}",
            confidence_threshold=0.93,
        )
        outputs = deploy_stack(config, aws)
        try:
            sfn = aws.client("stepfunctions")
            event = {"s3_bucket": outputs["ImageBucketName"], "s3_key": "direct/none.png"}
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                arns = list(
                    pool.map(
                        lambda _: start_execution(sfn, outputs["StateMachineArn"], event, "bench"),
                        range(args.executions),
                    )
                )
                list(pool.map(lambda arn: wait_for_execution(sfn, arn, 300), arns))
            print(f"{args.executions} executions run in {time.perf_counter() - started:.1f} s")
            print(f"load average before the consoles (1, 5, 15 min): {load()}")
            cold, read, reading_at_cold, warm, one, sizes = [], [], [], [], [], set()
            idle = idle_after = 0
            for attempt in range(args.repeats):  # a fresh console each time: each first view is cold
                with ConsoleServer(aws, outputs, stack_name=name, target="ministack") as console:
                    if attempt == 0:
                        time.sleep(3)  # no page open: the console must send nothing
                        idle = console.store.requests
                    elapsed, body = fetch(f"{console.url}/executions")
                    cold.append(elapsed)
                    sizes.add((len(body), body.count(b'<tr class="execution ')))
                    reading_at_cold.append(body.count(b' reading" data-arn='))  # rows not described yet
                    read_started = time.perf_counter()
                    if not console.store.wait_until_read(300):
                        raise SystemExit("not every row was read within 300 s")
                    read.append(time.perf_counter() - read_started)  # from the answer to the last row read
                    if attempt == 0:
                        after_read = console.store.requests
                        time.sleep(3)  # every row read, no page open: nothing more is sent
                        idle_after = console.store.requests - after_read
                        for _ in range(args.repeats):
                            time.sleep(0.6)  # past the list's cache, so each fetch lists again
                            warm.append(fetch(f"{console.url}/executions")[0])
                        page = f"{console.url}/execution?{urlencode({'arn': arns[0]})}"
                        for _ in range(args.repeats):
                            one.append(fetch(page)[0])
            print(
                f"with no page open for 3 s: {idle} requests to the emulator before the first view, "
                f"{idle_after} after every row was read"
            )
            print(
                f"executions page, {args.executions} listed (bytes, rows: {sorted(sizes)}): "
                f"cold, {args.repeats} fresh consoles: median {percentile(cold, 50) * 1000:.0f} ms, "
                f"max {max(cold) * 1000:.0f} ms, {min(reading_at_cold)} to {max(reading_at_cold)} rows still "
                f"being read; every row read after that answer: median "
                f"{percentile(read, 50):.1f} s, max {max(read):.1f} s; "
                f"warm median {percentile(warm, 50) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms"
            )
            print(
                f"execution page with its history: median {percentile(one, 50) * 1000:.0f} ms, "
                f"max {max(one) * 1000:.0f} ms"
            )
            print(f"load average after (1, 5, 15 min): {load()}")
        finally:
            teardown_stack(aws, name)


if __name__ == "__main__":
    main()
