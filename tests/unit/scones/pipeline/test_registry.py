"""The model registry: content-addressed versions, their metadata, aliases, prefixes."""

from __future__ import annotations

import json

import pytest

from local_model.artifact import pack_model_tar
from scones.pipeline import registry


def make_tarball(tmp_path, name, meta):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps(meta))
    (folder / "model.pt").write_bytes(name.encode())
    return pack_model_tar(folder, tmp_path / f"{name}.tar.gz")


META = {
    "metrics": {"validation": {"accuracy": 0.91, "n_images": 100}},
    "confidence_threshold": {"value": 0.9, "precision": 0.99},
}


def test_a_version_is_the_sha256_of_its_tarball_with_its_metadata(tmp_path):
    workdir = tmp_path / "work"
    tarball = make_tarball(tmp_path, "a", META)
    version = registry.register_model(workdir, tarball, source="train", data_sha256="d" * 64)
    assert version.id == registry.sha256_file(tarball)
    assert version.threshold == 0.9
    assert version.metrics["validation"]["accuracy"] == 0.91
    assert registry.version_tarball(workdir, version.id).read_bytes() == tarball.read_bytes()
    assert registry.read_registry(workdir).versions[version.id].data_sha256 == "d" * 64


def test_registering_the_same_model_twice_keeps_one_version(tmp_path):
    workdir = tmp_path / "work"
    tarball = make_tarball(tmp_path, "a", META)
    first = registry.register_model(workdir, tarball, source="deploy")
    again = registry.register_model(workdir, tarball, source="train", data_sha256="e" * 64)
    assert first.id == again.id
    kept = registry.read_registry(workdir).versions
    assert list(kept) == [first.id] and kept[first.id].data_sha256 == "e" * 64


def test_aliases_and_prefixes_resolve(tmp_path):
    workdir = tmp_path / "work"
    a = registry.register_model(workdir, make_tarball(tmp_path, "a", META), source="train")
    b = registry.register_model(workdir, make_tarball(tmp_path, "b", {}), source="train")
    registry.set_alias(workdir, "champion", a.id[:8])
    registry.set_alias(workdir, "challenger", b.id)
    assert registry.resolve_version(workdir, "champion").id == a.id
    assert registry.resolve_version(workdir, "challenger").id == b.id
    assert registry.resolve_version(workdir, b.id[:6]).id == b.id
    lines = registry.format_versions(registry.read_registry(workdir))
    assert any(line.startswith(a.short_id) and "champion" in line and "0.910" in line for line in lines)
    registry.set_alias(workdir, "challenger", None)
    with pytest.raises(registry.ModelVersionError, match="no model is the challenger"):
        registry.resolve_version(workdir, "challenger")


def test_unknown_versions_and_aliases_are_named_errors(tmp_path):
    workdir = tmp_path / "work"
    with pytest.raises(registry.ModelVersionError, match="no model version 'abcdef'"):
        registry.resolve_version(workdir, "abcdef")
    with pytest.raises(registry.ModelVersionError, match="too short"):
        registry.resolve_version(workdir, "ab")
    with pytest.raises(registry.ModelVersionError, match="unknown alias"):
        registry.set_alias(workdir, "prod", "abcdef")


def test_the_data_hash_follows_names_and_contents(tmp_path):
    (tmp_path / "d" / "bicycle").mkdir(parents=True)
    (tmp_path / "d" / "bicycle" / "1.png").write_bytes(b"x")
    before = registry.data_hash(tmp_path / "d")
    (tmp_path / "d" / "bicycle" / "1.png").write_bytes(b"y")
    assert registry.data_hash(tmp_path / "d") != before
