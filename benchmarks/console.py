"""The console's speed: the executions page with N executions listed (cold: every execution described for
the first time; warm: listed again), an execution page with its history, and the requests it sends to the
emulator with no page open. Runs on an embedded ministack with a stack deployed, no model: the executions
fail at the classifier (nothing listens where it calls), which is fine for timing the pages.

    python benchmarks/console.py --executions 1000
"""

from __future__ import annotations

import argparse
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


def fetch(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


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
            with ConsoleServer(aws, outputs, stack_name=name, target="ministack") as console:
                idle_before = console.store.requests
                time.sleep(3)  # no page open: the console must send nothing
                idle = console.store.requests - idle_before
                cold, size = fetch(f"{console.url}/executions")
                warm = []
                for _ in range(args.repeats):
                    time.sleep(0.6)  # past the list's cache, so each fetch lists again
                    warm.append(fetch(f"{console.url}/executions")[0])
                one = []
                page = f"{console.url}/execution?{urlencode({'arn': arns[0]})}"
                for _ in range(args.repeats):
                    one.append(fetch(page)[0])
            print(f"with no page open for 3 s: {idle} requests to the emulator")
            print(
                f"executions page, {args.executions} listed: cold {cold * 1000:.0f} ms ({size} bytes); "
                f"warm median {percentile(warm, 50) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms"
            )
            print(
                f"execution page with its history: median {percentile(one, 50) * 1000:.0f} ms, "
                f"max {max(one) * 1000:.0f} ms"
            )
        finally:
            teardown_stack(aws, name)


if __name__ == "__main__":
    main()
