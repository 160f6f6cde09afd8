"""The workdir's model registry: every trained model kept as a version, WORKDIR/models/<id>/model.tar.gz, its id
the sha256 of that model.tar.gz (content-addressed: the same model is one version however often it is
registered), with its metrics, its confidence threshold and the hash of the images it was trained on, listed in
WORKDIR/models/registry.json with the `champion` and `challenger` aliases.

On AWS the same versions are a SageMaker Model Package Group (cloud/model_packages.py): a version is a model
package (ModelDataUrl the same model.tar.gz; id, threshold, data hash and accuracy as CustomerMetadataProperties),
the champion the one Approved package (docs/rollout.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import tarfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from local_model.artifact import META_FILE
from scones.errors import UsageProblemError

REGISTRY_DIR = "models"
REGISTRY_FILE = "registry.json"
TARBALL = "model.tar.gz"
ALIASES = ("champion", "challenger")
SHORT_ID = 12  # characters of the id shown and accepted as a prefix (at least MIN_PREFIX)
MIN_PREFIX = 4


class ModelVersionError(UsageProblemError):
    """A model version that is not in the registry, an ambiguous prefix, or an unknown alias."""


@dataclass
class ModelVersion:
    id: str  # sha256 of model.tar.gz
    registered_at: str
    source: str  # "train", "deploy" or "register": how it came in
    metrics: dict = field(default_factory=dict)  # validation metrics training recorded in model.json
    threshold: float | None = None  # the confidence threshold training chose (model.json), None if none
    data_sha256: str | None = None  # of the training images (data_hash), None when not known

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]


@dataclass
class Registry:
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> id

    def aliases_of(self, version_id: str) -> list[str]:
        return [alias for alias, target in sorted(self.aliases.items()) if target == version_id]


def registry_dir(workdir: Path) -> Path:
    return Path(workdir) / REGISTRY_DIR


def version_tarball(workdir: Path, version_id: str) -> Path:
    return registry_dir(workdir) / version_id / TARBALL


def read_registry(workdir: Path) -> Registry:
    path = registry_dir(workdir) / REGISTRY_FILE
    if not path.is_file():
        return Registry()
    raw = json.loads(path.read_text())
    versions = {key: ModelVersion(**value) for key, value in raw.get("versions", {}).items()}
    return Registry(versions, dict(raw.get("aliases", {})))


def _write_registry(workdir: Path, registry: Registry) -> None:
    path = registry_dir(workdir) / REGISTRY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    raw = {"versions": {k: asdict(v) for k, v in registry.versions.items()}, "aliases": registry.aliases}
    partial.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


@contextlib.contextmanager
def _locked(workdir: Path):
    lock_path = registry_dir(workdir) / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            registry = read_registry(workdir)
            yield registry
            _write_registry(workdir, registry)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_hash(folder: Path) -> str:
    """sha256 over the training images: each file's path relative to `folder` and its content, in order."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def read_model_meta(tarball: Path) -> dict:
    """model.json from inside model.tar.gz ({} when it holds none)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(META_FILE)
            return json.loads(member.read()) if member is not None else {}
    except (KeyError, tarfile.TarError, OSError, ValueError):
        return {}


def register_model(
    workdir: Path, tarball: Path, *, source: str, data_sha256: str | None = None, now: datetime | None = None
) -> ModelVersion:
    """Keep `tarball` as a version (copied into the registry once) and return it; registering the same bytes
    again returns the version already kept (its data hash filled in if it was unknown)."""
    version_id = sha256_file(tarball)
    with _locked(workdir) as registry:
        known = registry.versions.get(version_id)
        if known is not None:
            if known.data_sha256 is None and data_sha256:
                known.data_sha256 = data_sha256
            return known
        kept = version_tarball(workdir, version_id)
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_name(TARBALL + ".partial")
        shutil.copyfile(tarball, partial)
        partial.replace(kept)
        meta = read_model_meta(kept)
        chosen = meta.get("confidence_threshold") or {}
        version = ModelVersion(
            id=version_id,
            registered_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            source=source,
            metrics=meta.get("metrics") or {},
            threshold=chosen.get("value"),
            data_sha256=data_sha256,
        )
        registry.versions[version_id] = version
        return version


def resolve_version(workdir: Path, name: str) -> ModelVersion:
    """A version by alias (`champion`, `challenger`), full id or unambiguous id prefix."""
    registry = read_registry(workdir)
    if name in ALIASES:
        if name not in registry.aliases:
            raise ModelVersionError(f"no model is the {name} yet: `scones models --set {name} VERSION` names one")
        return registry.versions[registry.aliases[name]]
    if len(name) < MIN_PREFIX:
        raise ModelVersionError(f"model version {name!r} is too short: give at least {MIN_PREFIX} characters")
    matches = [v for key, v in registry.versions.items() if key.startswith(name.lower())]
    if not matches:
        raise ModelVersionError(
            f"no model version {name!r} in {registry_dir(workdir)}: `scones models` lists them "
            "(`scones train` registers each model it trains)"
        )
    if len(matches) > 1:
        raise ModelVersionError(f"model version {name!r} is ambiguous: {', '.join(v.short_id for v in matches)}")
    return matches[0]


def set_alias(workdir: Path, alias: str, name: str | None) -> ModelVersion | None:
    """Point `alias` at the version `name` names (None: remove the alias); the version, or None."""
    if alias not in ALIASES:
        raise ModelVersionError(f"unknown alias {alias!r}: the aliases are {', '.join(ALIASES)}")
    version = resolve_version(workdir, name) if name is not None else None
    with _locked(workdir) as registry:
        if version is None:
            registry.aliases.pop(alias, None)
        else:
            registry.aliases[alias] = version.id
    return version


def format_versions(registry: Registry) -> list[str]:
    """One line per version, newest first: id, aliases, validation accuracy, threshold, data hash, when."""
    lines = []
    ordered = sorted(registry.versions.values(), key=lambda v: v.registered_at, reverse=True)
    for version in ordered:
        validation = version.metrics.get("validation") or {}
        accuracy = f"{validation['accuracy']:.3f}" if "accuracy" in validation else "-"
        threshold = f"{version.threshold:.3f}" if version.threshold is not None else "-"
        data = version.data_sha256[:12] if version.data_sha256 else "-"
        aliases = ",".join(registry.aliases_of(version.id)) or "-"
        lines.append(
            f"{version.short_id}  {aliases:<18} accuracy {accuracy}  threshold {threshold}  data {data}  "
            f"{version.registered_at}  ({version.source})"
        )
    return lines
