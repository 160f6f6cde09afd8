"""Workflow latency and throughput on an emulator: p50/p99 from StartExecution to the terminal state and
executions per second, for N executions run C at a time.

Starts the embedded emulator (or uses the one at AWS_ENDPOINT_URL) and the model server, deploys a
throwaway stack with cloud/deploy.py, runs the executions, tears everything down. The threshold defaults to
0 so that every execution takes the success path (all three Lambdas and the endpoint run). Cold starts
are excluded: each concurrency level is warmed up first.

    python benchmarks/workflow_latency.py --executions 100 --concurrency 1 4 8
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from emulated import aws_environment_for

from cloud.aws import AwsTarget
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from scones.local.emulator import emulator_endpoint
from scones.local.model_server import ModelServer
from scones.monitoring.report import percentile
from scones.workflow.execution import ExecutionResult, start_execution, upload_image, wait_for_execution

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "cifar100-bikes" / "train" / "bicycle" / "bike_s_000682.png"


HEADER = "conc     n    ok   p50 ms   p99 ms client p50 client p99  exec/s"


def random_model_dir(width: int) -> Path:
    """An untrained network of the served architecture: the latency does not depend on the weights."""
    from local_model.classifier import ModelMeta, save_model_dir
    from local_model.model import ResNet9

    model_dir = Path(tempfile.mkdtemp(prefix="scones-bench-model-"))
    save_model_dir(model_dir, [ResNet9(width=width)], ModelMeta(width=width))
    return model_dir


def run_one(sfn, state_machine_arn: str, event: dict) -> tuple[ExecutionResult, float]:
    started = time.perf_counter()
    arn = start_execution(sfn, state_machine_arn, event, name_prefix="bench")
    result = wait_for_execution(sfn, arn, timeout_s=300, poll_s=0.02, max_poll_s=0.05)
    return result, time.perf_counter() - started


def measure(sfn, state_machine_arn: str, event: dict, executions: int, concurrency: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        runs = list(pool.map(lambda _: run_one(sfn, state_machine_arn, event), range(executions)))
    wall_s = time.perf_counter() - started
    server = [r.seconds * 1000 for r, _ in runs]
    client = [seconds * 1000 for _, seconds in runs]
    statuses = [r.status for r, _ in runs]
    return {
        "concurrency": concurrency,
        "executions": executions,
        "succeeded": statuses.count("SUCCEEDED"),
        "p50_ms": percentile(server, 50),
        "p99_ms": percentile(server, 99),
        "mean_ms": statistics.fmean(server),
        "client_p50_ms": percentile(client, 50),
        "client_p99_ms": percentile(client, 99),
        "throughput_per_s": executions / wall_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100, help="executions per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8], help="executions in flight")
    parser.add_argument(
        "--warmup", type=int, default=2, help="rounds of C executions run before measuring at concurrency C"
    )
    parser.add_argument("--threshold", type=float, default=0.0, help="confidence threshold of the stack")
    parser.add_argument("--model-dir", type=Path, help="model to serve (default: untrained, --width)")
    parser.add_argument("--width", type=int, default=16, help="width of the untrained model")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="PNG or JPEG to classify")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    image = args.image.read_bytes()
    model_dir = args.model_dir or random_model_dir(args.width)
    stack_name = f"scones-bench-{uuid.uuid4().hex[:8]}"
    results = []
    quiet = ["--no-access-log"]
    with emulator_endpoint() as url, aws_environment_for(url), ModelServer(model_dir, extra_args=quiet) as server:
        config = DeployConfig(stack_name=stack_name, model_endpoint_url=server.url, confidence_threshold=args.threshold)
        try:
            deploy_started = time.perf_counter()
            outputs = deploy_stack(config, AwsTarget(timeout_s=600))
            print(f"emulator {url}; deployed {stack_name} in {time.perf_counter() - deploy_started:.1f} s", flush=True)
            aws = AwsTarget()
            sfn = aws.client("stepfunctions")
            key = upload_image(aws.client("s3"), outputs["ImageBucketName"], image)
            event = {"s3_bucket": outputs["ImageBucketName"], "s3_key": key}
            print(HEADER)
            for concurrency in args.concurrency:
                # Warm: each function gets as many workers as executions in flight (cold starts excluded).
                measure(sfn, outputs["StateMachineArn"], event, args.warmup * concurrency, concurrency)
                row = measure(sfn, outputs["StateMachineArn"], event, args.executions, concurrency)
                results.append(row)
                print(
                    f"{row['concurrency']:>4} {row['executions']:>5} {row['succeeded']:>5} {row['p50_ms']:>8.0f} "
                    f"{row['p99_ms']:>8.0f} {row['client_p50_ms']:>10.0f} {row['client_p99_ms']:>10.0f} "
                    f"{row['throughput_per_s']:>7.2f}",
                    flush=True,
                )
        finally:
            teardown_stack(AwsTarget(timeout_s=600), stack_name)
    if args.json:
        args.json.write_text(json.dumps({"emulator": url, "image_bytes": len(image), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
