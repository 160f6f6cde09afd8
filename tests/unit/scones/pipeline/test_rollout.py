"""scones/pipeline/rollout.py: the canary's steps, bake and rollback against a recorded endpoint (no server)."""

from __future__ import annotations

import json

import pytest

from local_model.artifact import pack_model_tar
from local_model.variants import EndpointVariants, Variant, write_variants
from scones.pipeline import registry, rollout
from scones.pipeline.rollout import VariantWindow


class RecordedEndpoint(rollout.LocalEndpoint):
    """Applies variants to its file and records them, without a server."""

    def __init__(self, tmp_path):
        super().__init__("http://127.0.0.1:9", 1, tmp_path / "variants.json", tmp_path / "model")
        object.__setattr__(self, "applied", [])

    def apply(self, variants):
        write_variants(self.variants_file, variants)
        self.applied.append(variants)
        return len(self.applied)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def version(tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({}))
    return registry.register_model(tmp_path / "work", pack_model_tar(folder, tmp_path / "new.tar.gz"), source="train")


def run(tmp_path, version, monkeypatch, window, percent=25.0):
    endpoint, clock, lines = RecordedEndpoint(tmp_path), FakeClock(), []
    monkeypatch.setattr(rollout, "read_window", lambda url, name, since, threshold: window)
    result = rollout.roll_out(
        endpoint,
        tmp_path / "work",
        version,
        canary_percent=percent,
        bake_s=10,
        threshold=0.9,
        progress=lines.append,
        clock=clock,
        sleep=clock.sleep,
    )
    return endpoint, result, lines


def test_a_healthy_canary_bakes_then_takes_all_traffic_and_becomes_champion(tmp_path, version, monkeypatch):
    endpoint, result, lines = run(tmp_path, version, monkeypatch, VariantWindow(50, 0, 5, (5.0,) * 50))
    name = f"Model-{version.short_id}"
    assert result.completed and result.variant == name
    canary, final = endpoint.applied
    assert [(v.name, v.weight) for v in canary.production] == [("AllTraffic", 0.75), (name, 0.25)]
    assert [(v.name, v.weight) for v in final.production] == [(name, 1.0)]
    assert registry.resolve_version(tmp_path / "work", "champion").id == version.id
    assert any(line.startswith("step 1: 25%") for line in lines) and any("step 2" in line for line in lines)
    assert result.seconds >= 10


def test_a_bad_canary_rolls_back_at_the_first_alarm(tmp_path, version, monkeypatch):
    endpoint, result, lines = run(tmp_path, version, monkeypatch, VariantWindow(20, 0, 20, (5.0,) * 20))
    assert not result.completed and result.alarms == ["low-confidence rate 100% > 30%"]
    _, restored = endpoint.applied
    assert restored == EndpointVariants((Variant("AllTraffic", tmp_path / "model", 1.0),))
    assert result.seconds < 10  # at the first reading, not at the end of the bake
    assert any(line.startswith("ALARM") for line in lines) and any("rolled back" in line for line in lines)
    with pytest.raises(registry.ModelVersionError):
        registry.resolve_version(tmp_path / "work", "champion")


def test_the_same_version_cannot_be_canaried_twice(tmp_path, version, monkeypatch):
    endpoint = RecordedEndpoint(tmp_path)
    name = f"Model-{version.short_id}"
    write_variants(endpoint.variants_file, EndpointVariants((Variant(name, tmp_path, 1.0),)))
    with pytest.raises(rollout.RolloutError, match="already serves"):
        rollout.roll_out(
            endpoint, tmp_path / "work", version, canary_percent=10, bake_s=1, threshold=0.9, progress=print
        )


def test_shadow_start_and_stop(tmp_path, version):
    endpoint = RecordedEndpoint(tmp_path)
    started = rollout.start_shadow(endpoint, tmp_path / "work", version)
    assert [v.name for v in started.shadow] == [f"Shadow-{version.short_id}"]
    assert registry.resolve_version(tmp_path / "work", "challenger").id == version.id
    assert rollout.stop_shadow(endpoint).shadow == ()
