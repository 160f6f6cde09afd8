"""The rollout journey through the command line, on a running `scones up` (docs/rollout.md): `scones models
--register` a deliberately bad version, `scones deploy --model V --canary 50 --bake 60` rolls it back by itself
(exit 1) while executions run; `scones shadow V` and `scones compare` report it against the champion; a good
version's canary completes and it becomes the champion. Runs on the suite's emulator (ministack, or LocalStack
through tests/localstack/run.py)."""

from __future__ import annotations

import re

import pytest

from lambdas.contract import Outcome
from scones.errors import EXIT_FAILED, EXIT_OK
from scones.local.state_file import read_state
from scones.pipeline import rollout
from tests.helpers.model_variants import make_same_answers_copy, make_unsure_model

from .conftest import NEEDS_UP_ON_THE_HOST
from .dev_loop import Traffic, copy_sources, run_on, scones, start_up_on_suite_emulator, stop_up, workdir_with_model

pytestmark = [pytest.mark.integration, NEEDS_UP_ON_THE_HOST]

ALARM_RATE = "0.7"  # the suite's quick model rejects about half at 0.93 (tests/integration/test_rollout.py)


def registered(workdir, tarball) -> str:
    result = scones("models", "--workdir", str(workdir), "--register", str(tarball))
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    return re.search(r"as model version ([0-9a-f]{12})", result.stdout).group(1)


def test_a_bad_version_rolls_back_a_shadow_is_compared_and_a_good_one_ships(model_dir, test_images, tmp_path):
    workdir = workdir_with_model(tmp_path, model_dir)
    bad = registered(workdir, make_unsure_model(model_dir, tmp_path))
    good = registered(workdir, make_same_answers_copy(model_dir, tmp_path))
    image = test_images.confident["bicycle"].path.read_bytes()
    up, _ = start_up_on_suite_emulator(workdir, copy_sources(tmp_path / "src"))
    try:
        outputs = read_state(workdir).outputs
        with Traffic(image, outputs) as traffic:
            canary = scones(
                "deploy", "--workdir", str(workdir), "--model", bad, "--canary", "50", "--bake", "60",
                "--alarm-low-confidence-rate", ALARM_RATE,
            )  # fmt: skip
            assert canary.returncode == EXIT_FAILED, canary.stdout + canary.stderr
            assert "ALARM after" in canary.stdout and f"model {bad} was rolled back" in canary.stderr + canary.stdout
            seconds = float(re.search(r"took ([0-9.]+) s in all", canary.stdout).group(1))
            assert seconds < 60, canary.stdout
            variants = rollout.LocalEndpoint(
                read_state(workdir).model_server_url, 0, rollout.variants_path(workdir), model_dir
            )
            assert [v.name for v in variants.variants().production] == ["AllTraffic"]

            shadow = scones("shadow", "--workdir", str(workdir), bad)
            assert shadow.returncode == EXIT_OK, shadow.stdout + shadow.stderr
            for _ in range(3):
                assert run_on(image, outputs).status == "SUCCEEDED"  # callers get the champion's answers
            compare = scones("compare", "--workdir", str(workdir), timeout_s=60)
            assert compare.returncode == EXIT_OK, compare.stdout + compare.stderr
            assert "answered by both" in compare.stdout and f"challenger (Shadow-{bad})" in compare.stdout
            assert scones("shadow", "--workdir", str(workdir), "--stop").returncode == EXIT_OK

            ship = scones(
                "deploy", "--workdir", str(workdir), "--model", good, "--canary", "50", "--bake", "10",
                "--alarm-low-confidence-rate", ALARM_RATE,
            )  # fmt: skip
            assert ship.returncode == EXIT_OK, ship.stdout + ship.stderr
            assert f"model {good} serves all traffic" in ship.stdout
        models = scones("models", "--workdir", str(workdir))
        assert any(line.startswith(good) and "champion" in line for line in models.stdout.splitlines())
        assert traffic.errors == []
        # Nothing lost: every execution routed, or rejected as low confidence by the bad canary's answers.
        others = [r.summary() for r in traffic.results if r.outcome not in (Outcome.ROUTED, Outcome.REJECTED)]
        assert others == []
        assert any(r.outcome == Outcome.REJECTED for r in traffic.results)  # the canary did answer some callers
        assert up.process.poll() is None, "scones up ended:\n" + "\n".join(up.lines)
    finally:
        code, output = stop_up(up)
    assert code == EXIT_OK, output
