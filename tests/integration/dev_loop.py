"""What the inner-loop tests share: a copy of the deployable sources to edit (never the repository's own files),
`scones up` on the suite's emulator with that copy, and executions run against it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from cloud.artifacts import ROOT, SourceTree
from cloud.aws import AwsTarget
from local_model.classifier import pack_model_tar
from scones.pipeline import steps
from scones.workflow.execution import ExecutionResult, run_workflow, upload_image

from .up_process import UpProcess, start_up

SOURCE_PARTS = ("lambdas", "statemachine", "cloud/template.yaml")
EXECUTION_TIMEOUT_S = 120.0


def copy_sources(destination: Path) -> SourceTree:
    """The deployable sources, copied: tests edit these, never the repository's."""
    for part in SOURCE_PARTS:
        source, target = ROOT / part, destination / part
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return SourceTree(destination).check()


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there exactly once) by `new`, as an editor saves: the file is rewritten."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new))


def workdir_with_model(tmp_path: Path, model_dir: Path) -> Path:
    workdir = tmp_path / "work"
    pack_model_tar(model_dir, steps.model_paths(workdir).tarball)
    return workdir


def start_up_on_suite_emulator(workdir: Path, sources: SourceTree, *extra_args: str) -> tuple[UpProcess, str]:
    """`scones up` on the suite's emulator (AWS_ENDPOINT_URL, which the aws_endpoint fixture set), deploying
    `sources`; its stack's name."""
    stack_name = f"scones-loop-{uuid.uuid4().hex[:8]}"
    args = ("--source-dir", str(sources.root), *extra_args)
    return start_up(workdir, stack_name, env=dict(os.environ), extra_args=args), stack_name


def stop_up(up: UpProcess, timeout_s: float = 120) -> tuple[int, str]:
    """Ctrl-C `scones up` (it deletes its stack); its exit code and everything it printed."""
    if up.process.poll() is None:
        up.process.send_signal(signal.SIGINT)
    try:
        code = up.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        up.process.kill()
        raise
    return code, up.read_to_end()


def scones(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scones", *args], capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ)
    )


def run_on(image: bytes, outputs: dict[str, str], aws: AwsTarget | None = None) -> ExecutionResult:
    """One execution of the workflow on `image`, started directly (not through the upload trigger)."""
    aws = aws or AwsTarget()
    key = upload_image(aws.client("s3"), outputs["ImageBucketName"], image)
    event = {"s3_bucket": outputs["ImageBucketName"], "s3_key": key}
    return run_workflow(event, outputs, aws, timeout_s=EXECUTION_TIMEOUT_S)


class Traffic:
    """Executions on one image, one after another on a thread, until stopped: what users see meanwhile."""

    def __init__(self, image: bytes, outputs: dict[str, str]):
        self.results, self.errors = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(image, outputs), daemon=True)

    def _run(self, image, outputs):
        while not self._stop.is_set():
            try:
                self.results.append(run_on(image, outputs))
            except Exception as e:  # reported by the test, which must see every failure
                self.errors.append(repr(e))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=180)
