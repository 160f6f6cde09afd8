"""Load ledger: N executions of the workflow, C at a time, over real images, on an emulator with the local
model server; prints throughput, latency percentiles and the ledger (every image routed, rejected or failed
with a named error exactly once, every execution terminal, no 5xx from the model server, one capture
record per served request). Exits 1 when the ledger does not balance.

Starts the embedded emulator (or uses the one at AWS_ENDPOINT_URL), trains the integration suite's quick
model (or serves --model-dir), starts the model server with its access log and captures in a folder of its
own, deploys a throwaway stack with cloud/deploy.py, runs the batch with scones.workflow.batch
(scones/workflow/ledger.py builds and checks the ledger), tears everything down.

    python benchmarks/load_ledger.py --executions 1000 --concurrency 32
    python benchmarks/load_ledger.py --executions 1000 --concurrency 32 --rollout   # across a canary and a rollback

With --rollout, while the batch runs the endpoint first takes a canary of a good new version (10% of the
traffic, baked 10 s, then all of it), then a canary of a deliberately bad one (every answer about 50/50), which
must roll back by itself; the ledger must still balance, every request answered by exactly one production
variant (one capture each, in that variant's folder).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from emulated import aws_environment_for

from cloud.aws import AwsTarget
from cloud.defaults import DEFAULT_CONFIDENCE_THRESHOLD
from cloud.deploy import DeployConfig, deploy_stack, teardown_stack
from cloud.guardrails import Guardrails
from cloud.polling import poll
from local_model.settings import VARIANTS_FILE_VAR
from scones.local.emulator import emulator_endpoint
from scones.local.model_server import ModelServer
from scones.monitoring.report import percentile
from scones.pipeline import registry, rollout
from scones.workflow.ledger import ModelServerFiles, check_ledger, choose_images, format_ledger, run_ledgered_batch
from tests.helpers.model_variants import QUICK_MODEL_GUARDRAILS, make_same_answers_copy, make_unsure_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "cifar100-bikes"
ENDPOINT_NAME = "scones-load-ledger"
EXECUTION_TIMEOUT_S = 300.0  # per execution: 32 in flight on two shared cores queue behind each other


def quick_hyperparameters() -> dict[str, str]:
    """The integration suite's quick recipe (one definition, in tests/integration/conftest.py)."""
    spec = importlib.util.spec_from_file_location("integration_conftest", ROOT / "tests/integration/conftest.py")
    conftest = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
    spec.loader.exec_module(conftest)
    return {k: str(v) for k, v in conftest.QUICK_HYPERPARAMETERS.items()}


def image_folder(data_dir: Path) -> Path:
    return data_dir / "train" if (data_dir / "train").is_dir() else data_dir


def train_quick_model(folder: Path) -> Path:
    from local_model.train import train_from_folder

    model_dir = Path(tempfile.mkdtemp(prefix="scones-ledger-model-"))
    started = time.perf_counter()
    metrics = train_from_folder(folder, model_dir, quick_hyperparameters())
    print(f"trained the quick model in {time.perf_counter() - started:.0f} s: {metrics}", flush=True)
    return model_dir


@contextlib.contextmanager
def deployed_stack(server: ModelServer, stack_prefix: str, threshold: float) -> Iterator[tuple[str, dict[str, str]]]:
    """The emulator (embedded, or the one at AWS_ENDPOINT_URL) with `server` running and a throwaway stack
    deployed against it: yields (emulator URL, stack outputs); tears the stack down and stops both after."""
    stack_name = f"{stack_prefix}-{uuid.uuid4().hex[:8]}"
    with emulator_endpoint() as url, aws_environment_for(url), server:
        config = DeployConfig(
            stack_name=stack_name,
            model_endpoint_name=server.endpoint_name,
            model_endpoint_url=server.url,
            confidence_threshold=threshold,
        )
        try:
            yield url, deploy_stack(config, AwsTarget(timeout_s=600))
        finally:
            teardown_stack(AwsTarget(timeout_s=600), stack_name)


class Rollouts:
    """The --rollout steps, in a thread beside the batch: a good canary that completes, then a bad one that must
    roll back (scones/pipeline/rollout.py, the alarm condition of cloud/guardrails.py)."""

    def __init__(self, server: ModelServer, model_dir: Path, files: Path, threshold: float, quick: bool):
        self.server, self.threshold = server, threshold
        self.workdir = files / "registry"
        self.endpoint = rollout.LocalEndpoint(server.url, server.pid, files / "variants.json", model_dir)
        self.good = registry.register_model(self.workdir, make_same_answers_copy(model_dir, files), source="bench")
        self.bad = registry.register_model(self.workdir, make_unsure_model(model_dir, files), source="bench")
        # The quick model rejects about half of the images at 0.93: its alarms are set as the template's parameters
        # allow (tests/helpers/model_variants.py says why); a fully trained model keeps the defaults.
        self.guardrails = QUICK_MODEL_GUARDRAILS if quick else Guardrails()
        self.results: list[rollout.RolloutResult] = []
        self.thread = threading.Thread(target=self.run, name="rollouts")
        self.error: Exception | None = None

    def start(self) -> Rollouts:
        self.thread.start()
        return self

    def answered(self) -> int:
        with urllib.request.urlopen(f"{self.server.url}/variants", timeout=10) as response:
            return sum(v["Invocations"] for v in json.loads(response.read())["variants"])

    def run(self) -> None:
        try:
            poll(self.answered, lambda n: n >= 100, timeout_s=300)  # the batch's traffic flows
            for version, bake_s in ((self.good, 10.0), (self.bad, 60.0)):
                self.results.append(
                    rollout.roll_out(
                        self.endpoint,
                        self.workdir,
                        version,
                        canary_percent=10,
                        bake_s=bake_s,
                        threshold=self.threshold,
                        progress=lambda line: print(f"rollout: {line}", flush=True),
                        guardrails=self.guardrails,
                    )
                )
        except Exception as e:  # reported with the ledger's problems
            self.error = e

    def problems(self) -> list[str]:
        if self.error is not None:
            return [f"the rollouts failed: {type(self.error).__name__}: {self.error}"]
        found = []
        if len(self.results) != 2:
            found.append(f"{len(self.results)} rollouts ran, not 2")
        elif not self.results[0].completed:
            found.append(f"the good canary rolled back: {self.results[0].alarms}")
        elif self.results[1].completed:
            found.append("the bad canary was not rolled back")
        return found


def latency_line(seconds: list[float]) -> str:
    if not seconds:
        return "no execution finished"
    ms = [s * 1000 for s in seconds]
    parts = [f"p{q} {percentile(ms, q):.0f} ms" for q in (50, 90, 99)]
    return ", ".join([*parts, f"max {max(ms):.0f} ms"])


def execution_window_s(executions: dict[str, dict]) -> float | None:
    """First StartExecution to last terminal state, by Step Functions' clock."""
    stops = [e["stopDate"] for e in executions.values() if e.get("stopDate")]
    if not stops:
        return None
    return (max(stops) - min(e["startDate"] for e in executions.values())).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1000, help="executions to run (one image each)")
    parser.add_argument("--concurrency", type=int, default=32, help="executions in flight at once")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="bicycle/ and motorcycle/ PNGs")
    parser.add_argument("--model-dir", type=Path, help="a trained model to serve (default: train the quick one)")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD, help="confidence threshold of the stack"
    )
    parser.add_argument("--timeout", type=float, default=EXECUTION_TIMEOUT_S, help="seconds per execution")
    parser.add_argument("--json", type=Path, help="also write the numbers and the ledger here")
    parser.add_argument(
        "--rollout",
        action="store_true",
        help="meanwhile, on the same endpoint: a canary of a good new version (10%%, baked 10 s, then all traffic), "
        "then a canary of a bad one (every answer about 50/50), which must roll back by itself",
    )
    args = parser.parse_args(argv)
    if args.executions < 1 or args.concurrency < 1:
        parser.error("--executions and --concurrency must be at least 1")

    load_before = os.getloadavg()
    folder = image_folder(args.data_dir)
    try:
        images, distinct = choose_images(folder, args.executions)
    except FileNotFoundError as e:
        parser.error(str(e))
    if args.executions <= distinct:
        print(f"{args.executions} distinct real images from {folder}", flush=True)
    else:
        print(f"{args.executions} executions over {distinct} real images from {folder}: images repeat", flush=True)
    model_dir = args.model_dir or train_quick_model(folder)
    files = Path(tempfile.mkdtemp(prefix="scones-ledger-"))
    captures = files / "captures"
    server = ModelServer(
        model_dir,
        log_path=files / "model-server.log",
        capture_destination=str(captures),
        endpoint_name=ENDPOINT_NAME,
        env={VARIANTS_FILE_VAR: str(files / "variants.json")},
    )
    with deployed_stack(server, "scones-ledger", args.threshold) as (url, outputs):
        print(f"emulator {url}; model server {server.url} (log {server.log_path}, captures {captures})")
        print(f"{args.executions} executions, {args.concurrency} at a time (cold starts included)", flush=True)
        aws = AwsTarget()
        rollouts = (
            Rollouts(server, model_dir, files, args.threshold, quick=args.model_dir is None).start()
            if args.rollout
            else None
        )
        ledger, wall_s = run_ledgered_batch(
            aws,
            outputs,
            images,
            ModelServerFiles(ENDPOINT_NAME, server.log_path, str(captures), url=server.url),
            concurrency=args.concurrency,
            timeout_s=args.timeout,
        )
        if rollouts is not None:
            rollouts.thread.join()
        # The same question asked once more, of the whole state machine: nothing may be left running.
        sfn = aws.client("stepfunctions")
        running = sfn.list_executions(stateMachineArn=outputs["StateMachineArn"], statusFilter="RUNNING")
    problems = check_ledger(ledger)
    if rollouts is not None:
        problems += rollouts.problems()
    if running["executions"]:
        problems.append(f"list_executions(statusFilter=RUNNING) still lists {len(running['executions'])}")
    window_s = execution_window_s(ledger.executions)
    seconds = [o.seconds for o in ledger.outcomes if o.seconds is not None]
    # The first wave starts every Lambda worker (C of each function, cold, on shared cores): shown apart.
    later = [o.seconds for o in ledger.outcomes[args.concurrency :] if o.seconds is not None]
    print(f"\nthroughput    {args.executions / wall_s:.1f} executions/s over {wall_s:.1f} s wall (uploads included)")
    if window_s:
        rate = args.executions / window_s
        print(f"              {rate:.1f} executions/s over {window_s:.1f} s, first start to last stop")
    print(f"latency       {latency_line(seconds)} (StartExecution to terminal state, Step Functions' clock)")
    print(f"              {latency_line(later)} without the first {args.concurrency} executions (the cold starts)")
    print(format_ledger(ledger, problems))
    load_after = os.getloadavg()
    print(f"load average  {load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute; 2 shared cores)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "executions": args.executions,
                    "concurrency": args.concurrency,
                    "distinct_images": distinct,
                    "wall_s": wall_s,
                    "execution_window_s": window_s,
                    "latency_ms": {f"p{q}": percentile([s * 1000 for s in seconds], q) for q in (50, 90, 99, 100)},
                    "latency_after_first_wave_ms": {
                        f"p{q}": percentile([s * 1000 for s in later], q) for q in (50, 90, 99, 100)
                    },
                    "outcomes": ledger.by_outcome,
                    "errors": ledger.errors,
                    "statuses": ledger.statuses,
                    "model_server_statuses": ledger.access.by_status if ledger.access else None,
                    "captures": len(ledger.captures) if ledger.captures is not None else None,
                    "problems": problems,
                },
                indent=2,
            )
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
