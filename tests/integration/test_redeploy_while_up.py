"""`scones deploy` while `scones up` runs (issue 22): it updates the stack `up` owns and keeps `up`'s model
server, reloading it in place only when the model changed; no second server, no teardown, `up` keeps running,
and executions started throughout succeed. Runs on the suite's emulator (ministack, or LocalStack through
tests/localstack/run.py)."""

from __future__ import annotations

import json
import shutil
import urllib.request

import psutil
import pytest

from local_model.artifact import META_FILE, pack_model_tar
from scones.errors import EXIT_OK
from scones.local.state_file import read_state
from scones.pipeline import steps

from .conftest import NEEDS_UP_ON_THE_HOST
from .dev_loop import (
    Traffic,
    copy_sources,
    edit,
    run_on,
    scones,
    start_up_on_suite_emulator,
    stop_up,
    workdir_with_model,
)

pytestmark = [pytest.mark.integration, NEEDS_UP_ON_THE_HOST]

RETURN_EVENT = "    return event\n\n\ndef check_confidence"


def revision(n: int) -> str:
    return f'    return {{**event, "revision": {n}}}\n\n\ndef check_confidence'


def model_servers_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "local_model.serve" in " ".join(p.cmdline())]


def served(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
        return json.loads(response.read())


def test_deploy_while_up_runs_updates_its_stack_and_keeps_its_model_server(
    aws_endpoint, model_dir, test_images, tmp_path
):
    workdir = workdir_with_model(tmp_path, model_dir)
    sources = copy_sources(tmp_path / "src")
    handler = sources.lambdas_dir / "filter_low_confidence.py"
    image = test_images.confident["bicycle"].path.read_bytes()
    up, stack_name = start_up_on_suite_emulator(workdir, sources)
    try:
        before = read_state(workdir)
        assert before.aws_endpoint_url == aws_endpoint
        assert [p.pid for p in model_servers_of(up.process.pid)] == [before.model_server_pid]
        assert run_on(image, before.outputs).status == "SUCCEEDED"

        with Traffic(image, before.outputs) as traffic:
            # First redeploy: a handler edit, the same model.
            edit(handler, RETURN_EVENT, revision(1))
            first = scones("deploy", "--workdir", str(workdir), "--source-dir", str(sources.root))
            assert first.returncode == EXIT_OK, first.stdout + first.stderr
            assert "the model is unchanged" in first.stdout
            assert run_on(image, before.outputs).output["revision"] == 1

            # Second redeploy: another handler edit and a new model.tar.gz (same weights, another model.json).
            edit(handler, revision(1), revision(2))
            retrained = tmp_path / "retrained"
            shutil.copytree(model_dir, retrained)
            meta = json.loads((retrained / META_FILE).read_text())
            (retrained / META_FILE).write_text(json.dumps({**meta, "metrics": {**meta["metrics"], "retrained": 1}}))
            pack_model_tar(retrained, steps.model_paths(workdir).tarball)
            second = scones("deploy", "--workdir", str(workdir), "--source-dir", str(sources.root))
            assert second.returncode == EXIT_OK, second.stdout + second.stderr
            assert "reloads it in place" in second.stdout
            last = run_on(image, before.outputs)
            assert last.status == "SUCCEEDED" and last.output["revision"] == 2, last.summary()

        assert up.process.poll() is None, "scones up ended:\n" + "\n".join(up.lines)
        after = read_state(workdir)
        assert (after.aws_endpoint_url, after.owner_pid) == (before.aws_endpoint_url, before.owner_pid)
        assert (after.model_server_url, after.model_server_pid) == (before.model_server_url, before.model_server_pid)
        assert after.model_sha256 == steps.sha256_of(steps.model_paths(workdir).tarball) != before.model_sha256
        assert [p.pid for p in model_servers_of(up.process.pid)] == [before.model_server_pid]  # no second server
        assert served(after.model_server_url)["model_version"] == 2  # reloaded once: for the new model only
        assert traffic.errors == []
        assert len(traffic.results) >= 2
        assert [r.status for r in traffic.results] == ["SUCCEEDED"] * len(traffic.results), [
            r.summary() for r in traffic.results if r.status != "SUCCEEDED"
        ]
    finally:
        code, output = stop_up(up)
    assert code == EXIT_OK, output
    assert "error" not in output.lower(), output
    assert stack_name in output
