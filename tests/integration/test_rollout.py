"""Shipping a new model safely, on the real stack: the suite's model server as an endpoint with variants, the
workflow's executions as live traffic (scones.workflow.ledger, the load ledger's code), and
scones.pipeline.rollout driving canary steps, bakes, rollbacks and a shadow variant, as `scones deploy --model V
--canary P --bake S` and `scones shadow V` do.

- a canary of a good model (a new version of the suite's model) bakes and takes all the traffic;
- a canary of a deliberately bad model (every answer about 50/50: all rejected as low confidence) rolls back by
  itself as soon as its variant's low-confidence rate sets off the alarm, well within the bake, and no execution
  fails (each one routed, or rejected with LowConfidenceError as the workflow must);
- across both, the ledger balances: every image accounted for once, every request answered by exactly one
  production variant (one capture record per served request, in that variant's folder);
- a shadow run: both variants' answers captured for the same requests, callers get only the champion's.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from collections import Counter

import pytest

from cloud.aws import AwsTarget
from cloud.polling import poll
from local_model.artifact import pack_model_tar
from local_model.capture_reader import ALL_VARIANTS, read_captured_inferences
from scones.local.model_server import reload_served_model
from scones.monitoring.compare import format_comparison
from scones.pipeline import registry, rollout
from scones.workflow.ledger import (
    ModelServerFiles,
    check_ledger,
    choose_images,
    format_ledger,
    image_digest,
    run_ledgered_batch,
    wait_for_captures,
)
from tests.helpers.model_variants import QUICK_MODEL_GUARDRAILS, make_same_answers_copy, make_unsure_model

from .conftest import CONFIDENCE_THRESHOLD, ENDPOINT_NAME, NEEDS_UP_ON_THE_HOST

pytestmark = [pytest.mark.integration, NEEDS_UP_ON_THE_HOST]

CONCURRENCY = 8
EXECUTION_TIMEOUT_S = 180.0
GOOD_BAKE_S = 20.0  # long enough for the alarm minimum of answers on LocalStack too (about 3 executions/s)
BAD_BAKE_S = 60.0  # the bad canary must roll back well before this
CANARY_PERCENT = 50.0  # of a small batch: enough answers for the alarm's minimum within seconds
TRAFFIC_TIMEOUT_S = 120.0
GUARDRAILS = QUICK_MODEL_GUARDRAILS  # the quick model's alarms (tests/helpers/model_variants.py)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, model_dir):
    """A registry holding the suite's model (the champion), a good new version and a bad one."""
    work = tmp_path_factory.mktemp("rollout-work")
    files = tmp_path_factory.mktemp("rollout-models")
    champion = registry.register_model(work, pack_model_tar(model_dir, files / "champion.tar.gz"), source="train")
    registry.set_alias(work, "champion", champion.id)
    return work


@pytest.fixture(scope="module")
def good_version(workdir, model_dir, tmp_path_factory):
    """A new version that answers as the champion does (the same weights, recorded as another training run)."""
    return registry.register_model(
        workdir, make_same_answers_copy(model_dir, tmp_path_factory.mktemp("good")), source="train"
    )


@pytest.fixture(scope="module")
def bad_version(workdir, model_dir, tmp_path_factory):
    return registry.register_model(
        workdir, make_unsure_model(model_dir, tmp_path_factory.mktemp("bad")), source="train"
    )


@pytest.fixture
def endpoint(model_server, model_dir):
    """The suite's model server as a LocalEndpoint; back to its one AllTraffic variant afterwards."""
    local = rollout.LocalEndpoint(model_server.url, model_server.pid, model_server.variants_file, model_dir)
    yield local
    model_server.variants_file.unlink(missing_ok=True)
    reload_served_model(model_server.url, model_server.pid)


@pytest.fixture
def server_files(model_server):
    return ModelServerFiles(
        ENDPOINT_NAME, model_server.log_path, model_server.capture_destination, url=model_server.url
    )


def rollout_under_traffic(stack, data_dir, server_files, images_n, start_rollout):
    """Run a ledgered batch of `images_n` images and, meanwhile, the rollout; (ledger, rollout result)."""
    images, _ = choose_images(data_dir, images_n)
    done = {}

    def traffic():
        done["ledger"], _ = run_ledgered_batch(
            AwsTarget(), stack, images, server_files, concurrency=CONCURRENCY, timeout_s=EXECUTION_TIMEOUT_S
        )

    before = invocations(server_files.url)
    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        # The step starts once traffic flows (the batch uploads its images first), so the bake sees it.
        poll(lambda: invocations(server_files.url), lambda n: n >= before + 5, timeout_s=TRAFFIC_TIMEOUT_S)
        result = start_rollout()
    finally:
        thread.join()
    ledger = done["ledger"]
    print(format_ledger(ledger, check_ledger(ledger)))
    return ledger, result


def invocations(url: str) -> int:
    with urllib.request.urlopen(f"{url}/variants", timeout=10) as response:
        return sum(v["Invocations"] for v in json.loads(response.read())["variants"])


def image_digest_of(record) -> str:
    return hashlib.sha256(record.input_body).hexdigest()


def assert_balanced_with_one_variant_each(ledger):
    assert check_ledger(ledger) == [], format_ledger(ledger, check_ledger(ledger))
    # Every served request answered by exactly one production variant: one production capture each.
    assert ledger.access is not None and ledger.captures is not None
    assert len(ledger.captures) == ledger.access.served
    # No execution failed: each one routed, or rejected as low confidence (a verdict, not a loss).
    assert ledger.by_outcome["failed"] == 0, ledger.errors


def test_a_canary_of_a_good_model_bakes_and_takes_all_the_traffic(
    stack, data_dir, endpoint, workdir, good_version, server_files
):
    lines = []
    ledger, result = rollout_under_traffic(
        stack,
        data_dir,
        server_files,
        120,
        lambda: rollout.roll_out(
            endpoint,
            workdir,
            good_version,
            canary_percent=CANARY_PERCENT,
            bake_s=GOOD_BAKE_S,
            threshold=CONFIDENCE_THRESHOLD,
            progress=lines.append,
            guardrails=GUARDRAILS,
        ),
    )
    print("\n".join(lines))
    assert result.completed, lines
    assert result.window.invocations >= 10, lines  # it was watched on real answers
    assert [v.name for v in endpoint.variants().production] == [result.variant]
    assert registry.resolve_version(workdir, "champion").id == good_version.id
    assert_balanced_with_one_variant_each(ledger)
    answered_by = Counter(r.variant_name for r in ledger.captures)
    assert answered_by[result.variant] > 0 and answered_by["AllTraffic"] > 0, answered_by


def test_a_canary_of_a_bad_model_rolls_back_by_itself_within_the_bake(
    stack, data_dir, endpoint, workdir, bad_version, server_files
):
    lines = []
    champion = registry.resolve_version(workdir, "champion").id
    ledger, result = rollout_under_traffic(
        stack,
        data_dir,
        server_files,
        80,
        lambda: rollout.roll_out(
            endpoint,
            workdir,
            bad_version,
            canary_percent=CANARY_PERCENT,
            bake_s=BAD_BAKE_S,
            threshold=CONFIDENCE_THRESHOLD,
            progress=lines.append,
            guardrails=GUARDRAILS,
        ),
    )
    print("\n".join(lines))
    assert not result.completed, lines
    assert any(alarm.startswith("low-confidence rate") for alarm in result.alarms), result.alarms
    assert result.seconds < BAD_BAKE_S, result
    assert [v.name for v in endpoint.variants().production] == ["AllTraffic"]  # as it was
    assert registry.resolve_version(workdir, "champion").id == champion
    assert_balanced_with_one_variant_each(ledger)
    answered_by = Counter(r.variant_name for r in ledger.captures)
    assert answered_by[result.variant] >= GUARDRAILS.min_invocations, answered_by  # the alarms' minimum, answered


def test_a_shadow_answers_every_request_and_callers_get_only_the_champions(
    stack, data_dir, endpoint, workdir, bad_version, server_files, model_server
):
    rollout.start_shadow(endpoint, workdir, bad_version)
    shadow_name = rollout.shadow_name(bad_version)
    seen = {r.event_id for r in read_captured_inferences(model_server.capture_destination, variants=ALL_VARIANTS)}
    images, _ = choose_images(data_dir, 60)  # drift between the answers needs 50 pairs
    ledger, _ = run_ledgered_batch(
        AwsTarget(), stack, images, server_files, concurrency=CONCURRENCY, timeout_s=EXECUTION_TIMEOUT_S
    )
    assert_balanced_with_one_variant_each(ledger)
    # Callers got the champion's answers only: the unsure shadow would have answered about 50/50.
    production_ids = {r.inference_id for r in ledger.captures}
    assert {r.variant_name for r in ledger.captures} == {"AllTraffic"}

    def shadow_records():
        return [
            r
            for r in read_captured_inferences(model_server.capture_destination, variants=shadow_name)
            if r.event_id not in seen
        ]

    shadows = wait_for_captures(shadow_records, len(production_ids))
    assert {r.inference_id for r in shadows} == production_ids  # the same requests, each once
    assert all(max(r.output) < 0.51 for r in shadows)
    champion_answers = {image_digest_of(r): r.output for r in ledger.captures}
    shadow_answers = {image_digest_of(r): r.output for r in shadows}
    for outcome in ledger.scored:
        digest = image_digest(outcome.path)
        assert outcome.scores == pytest.approx(champion_answers[digest])
        assert outcome.scores != pytest.approx(shadow_answers[digest], abs=1e-6)
    comparison = rollout.compare_variants(
        model_server.capture_destination, ENDPOINT_NAME, model_server.url, CONFIDENCE_THRESHOLD
    )
    assert comparison.pairs >= len(production_ids)
    assert comparison.shadow.low_confidence_rate == 1.0
    assert comparison.drift["differ"], comparison.drift  # about 50/50 against the champion's answers
    print("\n".join(format_comparison(comparison)))
