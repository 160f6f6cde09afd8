"""The record of the artifacts a deployment used (`artifacts.json`), and the comparison that proves a
promotion to AWS ships the very artifacts that were tested on the emulator."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_IMAGE_CONTEXT = ROOT / "local_model"  # all the model image's build context lets in (.dockerignore)
MANIFEST_FORMAT = "scones-artifacts/1"
MANIFEST_NAME = "artifacts.json"

# Artifact names, as printed and as recorded.
TEMPLATE = "template.yaml"
MODEL_DATA = "model.tar.gz"
MODEL_IMAGE_ID = "model image ID"
MODEL_IMAGE_INPUTS = "model image build inputs"
# Optional: only the docker compose journey serves the model from the image itself; the embedded one
# runs the same local_model code in-process, which MODEL_IMAGE_INPUTS covers.
OPTIONAL_ARTIFACTS = frozenset({MODEL_IMAGE_ID})


class ManifestError(RuntimeError):
    """There is no usable record of a local test."""


def model_image_inputs_sha256(context: Path = MODEL_IMAGE_CONTEXT) -> str:
    """One hash over every file the model image is built from (local_model/, without the bytecode caches
    .dockerignore leaves out, and without the wheels an offline build puts in local_model/wheels/: what they
    install is pinned by requirements.txt, which counts): name, size and content, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context.parent).as_posix()
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if path.parent == context / "wheels" and path.suffix in (".whl", ".gz"):
            continue
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a deployment used: artifact name -> sha256 (the model image's ID for the image), and where."""

    artifacts: dict[str, str]
    target: str  # the CloudFormation endpoint the stack was deployed through
    stack_name: str
    region: str
    recorded_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    format: str = MANIFEST_FORMAT

    def describe(self) -> str:
        return f"{self.target} (stack {self.stack_name}, {self.region}, {self.recorded_at})"


def write_manifest(path: Path, manifest: Manifest) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)  # a reader never sees half a record
    return path


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ManifestError(
            f"no record of a local test at {path}: deploy to the emulator first (`scones up`, or `scones deploy` "
            "while an emulator runs), from the same --workdir"
        ) from e
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} is not a readable artifact manifest ({e}): deploy to the emulator again") from e
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path} is not a {MANIFEST_FORMAT} manifest: deploy to the emulator again")
    try:
        return Manifest(
            artifacts=dict(raw["artifacts"]),
            target=raw["target"],
            stack_name=raw["stack_name"],
            region=raw["region"],
            recorded_at=raw["recorded_at"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{path} lacks {e}: deploy to the emulator again") from e


@dataclass(frozen=True)
class ArtifactCheck:
    name: str
    current: str | None  # None: cannot be determined here
    recorded: str | None  # None: the local test did not record it

    @property
    def optional(self) -> bool:
        return self.name in OPTIONAL_ARTIFACTS

    @property
    def verdict(self) -> str:
        if self.current is None:
            return "cannot be checked here" if self.recorded else "cannot be determined here"
        if self.recorded is None:
            return "not part of the local test" if self.optional else "NOT RECORDED by the local test"
        return "same as tested" if self.current == self.recorded else "DIFFERS from the tested one"

    def explain(self) -> str:
        if self.current and self.recorded and self.current != self.recorded:
            return f"{self.name} differs: tested {self.recorded}, now {self.current}"
        if self.current is None:
            return f"{self.name} {self.verdict}"
        return f"{self.name} was not recorded by the local test (now {self.current})"

    @property
    def proven(self) -> bool:
        """False when this artifact keeps the promotion from being the tested one."""
        if self.current is None or self.recorded is None:
            return self.optional
        return self.current == self.recorded


@dataclass(frozen=True)
class Comparison:
    manifest: Manifest
    checks: list[ArtifactCheck]

    @property
    def identical(self) -> bool:
        return all(check.proven for check in self.checks)

    @property
    def differences(self) -> list[str]:
        return [check.explain() for check in self.checks if not check.proven]

    def summary(self) -> str:
        if self.identical:
            return f"identical to the artifacts tested locally on {self.manifest.describe()}"
        listed = "\n".join(f"  - {line}" for line in self.differences)
        return f"NOT the artifacts tested locally on {self.manifest.describe()}:\n{listed}"


def compare_artifacts(current: dict[str, str | None], manifest: Manifest) -> Comparison:
    """Check every current artifact (None: cannot be determined here) against the recorded ones."""
    names = list(current) + [name for name in manifest.artifacts if name not in current]
    return Comparison(manifest, [ArtifactCheck(n, current.get(n), manifest.artifacts.get(n)) for n in names])
