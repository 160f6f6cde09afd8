"""Batch over a prefix: N real images uploaded under one S3 prefix, classified by the batch state machine
(a Distributed Map, statemachine/batch_classification.asl.json) on an emulator with the local model
server; prints images/s, the summary per class and the load average before and after. Exits 1 when the
summary does not count every uploaded image or something is left running.

Starts the embedded emulator (or uses the one at AWS_ENDPOINT_URL), trains the integration suite's quick
model (or serves --model-dir), deploys a throwaway stack, tears everything down. The helpers are
benchmarks/load_ledger.py's.

    python benchmarks/prefix_batch.py --images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_ledger import DEFAULT_DATA_DIR, deployed_stack, image_folder, train_quick_model

from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_CONFIDENCE_THRESHOLD
from scones.local.model_server import ModelServer
from scones.workflow.ledger import choose_images
from scones.workflow.prefix_batch import format_summary, run_prefix_batch

ENDPOINT_NAME = "scones-prefix-batch"
UPLOAD_THREADS = 8


def upload(s3, bucket: str, prefix: str, images: list[tuple[Path, str]]) -> float:
    """Put each image under prefix/<class>/<index>-<name>; return the seconds it took."""
    started = time.perf_counter()

    def put(item):
        index, (path, label) = item
        s3.put_object(Bucket=bucket, Key=f"{prefix}{label}/{index:05d}-{path.name}", Body=path.read_bytes())

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(tqdm(pool.map(put, enumerate(images)), total=len(images), unit="image", desc="upload"))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images to put under the prefix")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="bicycle/ and motorcycle/ PNGs")
    parser.add_argument("--model-dir", type=Path, help="a trained model to serve (default: train the quick one)")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD, help="confidence threshold of the stack"
    )
    parser.add_argument("--tolerated-failure-percentage", type=float, default=0.0, help="of the batch")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds the batch may take")
    parser.add_argument("--json", type=Path, help="also write the numbers and the summary here")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")

    load_before = os.getloadavg()
    folder = image_folder(args.data_dir)
    images, distinct = choose_images(folder, args.images)
    repeats = "" if args.images <= distinct else f" (over {distinct} distinct: images repeat)"
    print(f"{args.images} real images from {folder}{repeats}", flush=True)
    model_dir = args.model_dir or train_quick_model(folder)
    server = ModelServer(model_dir, endpoint_name=ENDPOINT_NAME)
    with deployed_stack(server, "scones-prefix", args.threshold) as (url, outputs):
        aws = AwsTarget()
        bucket, prefix = outputs["ImageBucketName"], f"bench-{uuid.uuid4().hex[:8]}/"
        upload_s = upload(aws.client("s3"), bucket, prefix, images)
        print(f"emulator {url}; model server {server.url}; uploaded in {upload_s:.1f} s", flush=True)
        started = time.perf_counter()
        result = run_prefix_batch(
            aws,
            outputs,
            bucket,
            prefix,
            tolerated_failure_percentage=args.tolerated_failure_percentage,
            timeout_s=args.timeout,
        )
        wall_s = time.perf_counter() - started
        sfn = aws.client("stepfunctions")
        running = sfn.list_executions(stateMachineArn=outputs["BatchStateMachineArn"], statusFilter="RUNNING")
    load_after = os.getloadavg()
    problems = []
    if result.status != "SUCCEEDED":
        problems.append(f"the batch ended {result.status}: {result.error}")
    if result.summary is None or result.summary["totals"]["items"] != args.images:
        problems.append(f"the summary does not count the {args.images} images")
    if running["executions"]:
        problems.append(f"{len(running['executions'])} executions still RUNNING")
    print(format_summary(result))
    rate = args.images / result.seconds
    print(f"\nthroughput    {rate:.1f} images/s over {result.seconds:.1f} s (Step Functions' clock)")
    print(f"              {args.images / wall_s:.1f} images/s over {wall_s:.1f} s wall (start to summary read)")
    print(f"load average  {load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute; 2 shared cores)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if args.json:
        numbers = {
            "images": args.images,
            "distinct_images": distinct,
            "execution_s": result.seconds,
            "wall_s": wall_s,
            "upload_s": upload_s,
            "images_per_s": args.images / result.seconds,
            "load_before": load_before,
            "load_after": load_after,
            "result": result.to_dict(),
            "problems": problems,
        }
        args.json.write_text(json.dumps(numbers, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
