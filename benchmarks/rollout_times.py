"""Benchmark a model update on the local endpoint: how long a weight step takes, how long a bad canary lives
before it is rolled back, and what a shadow variant costs the caller.

    python benchmarks/rollout_times.py [--model-dir D] [--rate 20] [--canary 10]

One real model server (scones/local/model_server.py) with a variants file; a steady stream of SageMaker
Runtime requests (`--rate` per second, 32x32 PNGs, 4 client threads) stands in for the workflow. Measured:

- a weight step whose models are loaded already (write the variants file, SIGHUP, reloaded), and one that
  loads a new model (the canary's first step);
- a canary of a deliberately bad model (the served model at temperature 1000: every answer about 50/50) at
  `--canary` percent: seconds from the step to the rollback, with scones.pipeline.rollout and the template's
  alarm condition (cloud/guardrails.py);
- the caller's latency p50/p99 without and with a shadow variant.

Without --model-dir it serves an untrained width-16 ResNet9: an untrained model is unsure of everything as well,
so the alarm rate is set to 99% and only the unsure copy (100%) sets it off.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cloud.guardrails import Guardrails
from local_model.artifact import pack_model_tar
from local_model.variants import EndpointVariants, Variant
from scones.local.model_server import ModelServer
from scones.monitoring.report import percentile
from scones.pipeline import registry, rollout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.serve_latency import build_untrained_model, png_bytes
from tests.helpers.model_variants import make_unsure_model

ENDPOINT = "scones-image-classifier"
CLIENTS = 4


class Traffic:
    """`rate` requests a second from CLIENTS threads until stopped; each caller latency is kept."""

    def __init__(self, server: ModelServer, rate: float):
        self.server, self.rate = server, rate
        self.stop, self.latencies = threading.Event(), []
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def client(self, index: int) -> None:
        rng = np.random.default_rng(index)
        connection = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        interval = CLIENTS / self.rate
        while not self.stop.is_set():
            started = time.perf_counter()
            connection.request(
                "POST", f"/endpoints/{ENDPOINT}/invocations", png_bytes(rng), {"Content-Type": "image/png"}
            )
            connection.getresponse().read()
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.stop.wait(max(0.0, interval - (time.perf_counter() - started)))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a trained model folder [default: an untrained one]")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--canary", type=float, default=10.0, help="percent of traffic to the bad canary")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scones-rollout-bench-"))
    model_dir = args.model_dir or build_untrained_model(work / "model")
    guardrails = Guardrails() if args.model_dir else Guardrails(low_confidence_rate=0.99)
    champion = registry.register_model(work, pack_model_tar(model_dir, work / "champion.tar.gz"), source="bench")
    bad = registry.register_model(work, make_unsure_model(model_dir, work), source="bench")
    variants_file = work / "variants.json"
    server = ModelServer(model_dir, env={"SCONES_VARIANTS_FILE": str(variants_file)}, extra_args=["--no-access-log"])
    with server:
        endpoint = rollout.LocalEndpoint(server.url, server.pid, variants_file, model_dir)
        champion_variant = Variant("AllTraffic", registry.version_tarball(work, champion.id), 1.0)
        with Traffic(server, args.rate) as traffic:
            time.sleep(3)
            baseline = list(traffic.latencies)
            started = time.perf_counter()
            endpoint.apply(EndpointVariants((champion_variant,)))  # loads the champion's tarball
            loading_step_s = time.perf_counter() - started
            started = time.perf_counter()
            endpoint.apply(EndpointVariants((Variant("AllTraffic", champion_variant.model_dir, 1.0),)))
            loaded_step_s = time.perf_counter() - started
            result = rollout.roll_out(
                endpoint,
                work,
                bad,
                canary_percent=args.canary,
                bake_s=300,
                threshold=0.93,
                progress=lambda line: print(f"  {line}"),
                guardrails=guardrails,
            )
            before_shadow = len(traffic.latencies)
            rollout.start_shadow(endpoint, work, bad)
            time.sleep(5)
            with_shadow = traffic.latencies[before_shadow:]
    print(f"weight step loading a new model: {loading_step_s:.2f} s; with the models loaded: {loaded_step_s:.2f} s")
    print(
        f"bad canary at {args.canary:g}% of {args.rate:g} requests/s: rolled back after {result.seconds:.1f} s "
        f"({result.window.invocations} of its answers; {'; '.join(result.alarms)})"
    )
    print(
        f"caller latency without shadow p50 {percentile(baseline, 50):.1f} ms p99 {percentile(baseline, 99):.1f} ms; "
        f"with shadow p50 {percentile(with_shadow, 50):.1f} ms p99 {percentile(with_shadow, 99):.1f} ms"
    )
    print(json.dumps({"loading_step_s": loading_step_s, "loaded_step_s": loaded_step_s, "rollback_s": result.seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
