"""Benchmark the model server: single-image latency over HTTP (p50/p99) and batch throughput of predict_fn.

    python benchmarks/serve_latency.py [--model-dir D] [--requests 500] [--warmup 50]

Without --model-dir it serves untrained width-16 ResNet9s (--networks of them, averaged, as the recipe trains)
from a temporary directory: the numbers depend on the architecture, not on the weights. Requests are real
32x32 RGBA PNGs (like the training images) sent one at a time over a kept-alive connection, as boto3 and the
Lambdas send them.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from local_model import inference
from local_model.classifier import ModelMeta, save_model_dir
from local_model.model import ResNet9
from scones.local.model_server import ModelServer
from scones.monitoring.report import percentile


def build_untrained_model(model_dir: Path, width: int = 16, networks: int = 1, tta_shift_px: int = 0) -> Path:
    torch.manual_seed(0)
    meta = ModelMeta(width=width, tta_shift_px=tta_shift_px)
    save_model_dir(model_dir, [ResNet9(width=width) for _ in range(networks)], meta)
    return model_dir


def png_bytes(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def percentiles_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99)}


def measure_http(url: str, bodies: list[bytes], requests: int, warmup: int, path: str) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "image/png", "Accept": "application/json"}
    timings = []
    for i in range(warmup + requests):
        body = bodies[i % len(bodies)]
        start = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {payload[:200]!r}")
        if i >= warmup:
            timings.append(elapsed)
    connection.close()
    return timings


def measure_batch(model, batch_size: int, seconds: float, rng: np.random.Generator) -> float:
    images = rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8)
    inference.predict_fn(images, model)  # warm up kernels for this shape
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        inference.predict_fn(images, model)
        done += batch_size
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="model directory or model.tar.gz; default: untrained width 16")
    parser.add_argument("--networks", type=int, default=2, help="untrained model: ensemble members (the recipe's 2)")
    parser.add_argument("--width", type=int, default=16, help="untrained model: the networks' width")
    parser.add_argument("--tta-shift-px", type=int, default=0, help="untrained model: shifted test-time views")
    parser.add_argument("--requests", type=int, default=500, help="timed single-image requests per path")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first")
    parser.add_argument("--batch-sizes", default="1,32,256", help="comma-separated predict_fn batch sizes")
    parser.add_argument("--batch-seconds", type=float, default=3.0, help="time spent per batch size")
    parser.add_argument(
        "--batch-threads", default=f"1,{os.cpu_count()}", help="comma-separated torch thread counts for batches"
    )
    parser.add_argument("--access-log", action="store_true", help="keep uvicorn's per-request log on")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    bodies = [png_bytes(rng) for _ in range(64)]
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or build_untrained_model(
            Path(scratch) / "model", args.width, args.networks, args.tta_shift_px
        )
        env = {"SCONES_LOG_LEVEL": "warning"}
        rows = []
        extra_args = [] if args.access_log else ["--no-access-log"]
        with ModelServer(model_dir, env=env, extra_args=extra_args) as server:
            for path in ("/invocations", f"/endpoints/{server.endpoint_name}/invocations"):
                stats = percentiles_ms(measure_http(server.url, bodies, args.requests, args.warmup, path))
                rows.append((f"HTTP POST {path}, 1 PNG", stats))

        model = inference.model_fn(model_dir)
        torch.set_num_threads(1)
        single = [inference.input_fn(body, "image/png") for body in bodies]
        fused = model._fused
        for name, runner in (("fused, as served", fused), ("members one by one", None)):
            model._fused = runner  # the served path runs the members as one (local_model/fused.py)
            timings = []
            for i in range(args.warmup + args.requests):
                start = time.perf_counter()
                inference.predict_fn(single[i % len(single)], model)
                if i >= args.warmup:
                    timings.append(time.perf_counter() - start)
            rows.append((f"predict_fn, 1 image, 1 thread, {name}", percentiles_ms(timings)))
        model._fused = fused

        throughput = []
        for threads in map(int, args.batch_threads.split(",")):
            torch.set_num_threads(threads)
            for size in map(int, args.batch_sizes.split(",")):
                throughput.append((threads, size, measure_batch(model, size, args.batch_seconds, rng)))

    model_name = args.model_dir or (
        f"untrained ResNet9 width {args.width}, {args.networks} network(s), {model.view_count()} test-time views"
    )
    print(f"\nmodel: {model_name}; {args.requests} timed requests after {args.warmup} warm-up")
    # Other work on the machine shows up directly in the tail latencies: say how busy it was.
    print(f"1-min load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(f"{'single-image latency':<48} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, stats in rows:
        print(f"{name:<48} {stats['p50']:>8.2f} {stats['p90']:>8.2f} {stats['p99']:>8.2f}")
    print(f"\n{'batch throughput (predict_fn, as served)':<48} {'threads':>8} {'images/s':>8}")
    for threads, size, rate in throughput:
        print(f"{'batch of ' + str(size):<48} {threads:>8} {rate:>8.0f}")
    summary = {
        "latency_ms": dict(rows),
        "images_per_s": {f"batch{size}_threads{threads}": rate for threads, size, rate in throughput},
    }
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
