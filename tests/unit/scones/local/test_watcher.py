"""scones/local/watcher.py on real files, with an updater that records what it is handed: which files count, and edits
saved together arrive as one batch."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from cloud.artifacts import ROOT, SourceTree
from scones.local.hot_update import Update
from scones.local.watcher import SourceWatcher

DEADLINE_S = 30.0
QUIET_S = 0.5  # no report for this long: the probe's saves have all been seen


class RecordingUpdater:
    def __init__(self):
        self.batches: list[list[str]] = []
        self.arrived = threading.Event()

    def apply(self, changed: list[str]) -> Update:
        self.batches.append(changed)
        self.arrived.set()
        return Update(changed, ["recorded"])

    def warm(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def watched(tmp_path):
    for part in ("lambdas", "statemachine"):
        shutil.copytree(ROOT / part, tmp_path / "src" / part, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "src" / "cloud").mkdir()
    shutil.copy2(ROOT / "cloud" / "template.yaml", tmp_path / "src" / "cloud" / "template.yaml")
    sources = SourceTree(tmp_path / "src").check()
    tarball = tmp_path / "work" / "model" / "model.tar.gz"
    updater, said = RecordingUpdater(), []
    watcher = SourceWatcher(updater, sources, tarball, tmp_path / "work", said.append).start()
    wait_until_watching(sources, updater)
    said.clear()
    yield sources, tarball, updater, said
    watcher.stop()


def wait_until_watching(sources: SourceTree, updater: RecordingUpdater) -> None:
    """Save a probe until the watcher reports it (watchfiles says nothing when its watches are in place), then
    until the probe's last saves have been reported too."""
    probe = sources.lambdas_dir / "probe.py"
    deadline = time.monotonic() + DEADLINE_S
    while not updater.arrived.wait(0.1):
        assert time.monotonic() < deadline, "the watcher never reported the probe"
        probe.write_text(f"# {time.monotonic()}\n")
    while updater.arrived.wait(QUIET_S):
        updater.arrived.clear()
    updater.batches.clear()


def next_batch(updater: RecordingUpdater) -> list[str]:
    assert updater.arrived.wait(DEADLINE_S), "no change was reported"
    updater.arrived.clear()
    return updater.batches[-1]


def test_edits_saved_together_are_one_batch(watched):
    sources, _, updater, said = watched
    for name in ("classify_image.py", "contract.py"):
        path = sources.lambdas_dir / name
        path.write_text(path.read_text() + "\n")
    assert next_batch(updater) == ["lambdas/classify_image.py", "lambdas/contract.py"]
    assert said == ["watch: lambdas/classify_image.py, lambdas/contract.py changed -> recorded (0.00 s)"]


def test_the_template_the_definitions_and_the_model_are_watched_and_other_files_are_not(watched):
    sources, tarball, updater, _ = watched
    (sources.lambdas_dir / "notes.txt").write_text("not code")
    (sources.root / "cloud" / "other.yaml").write_text("a: 1")
    sources.template.write_text(sources.template.read_text() + "\n")
    assert next_batch(updater) == ["cloud/template.yaml"]
    path = sources.state_machines["StateMachineDefinitionKey"]
    path.write_text(path.read_text() + "\n")
    assert next_batch(updater) == ["statemachine/image_classification.asl.json"]
    tarball.write_bytes(b"new model")
    assert next_batch(updater) == [str(tarball.resolve())]
    assert len(updater.batches) == 3
