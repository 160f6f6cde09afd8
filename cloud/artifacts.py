"""What a deployment ships, built reproducibly and addressed by content: the Lambda zips, the state machine
definitions, model.tar.gz; and the sha256 of each, with the template's and the model image's, which the
manifest records (cloud/manifest.py) and a promotion checks. The sources are read from a SourceTree: this
repository, unless `--source-dir` names a copy of it (what the watch tests edit)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cloud import manifest
from cloud.errors import SourceTreeError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "cloud" / "template.yaml"
STATE_MACHINE_PATH = ROOT / "statemachine" / "image_classification.asl.json"
BATCH_STATE_MACHINE_PATH = ROOT / "statemachine" / "batch_classification.asl.json"
LAMBDAS_DIR = ROOT / "lambdas"


@dataclass(frozen=True)
class SourceTree:
    """Where the deployed sources are read from: a folder holding lambdas/, statemachine/ and cloud/template.yaml
    laid out as in this repository (the default)."""

    root: Path = ROOT

    @property
    def template(self) -> Path:
        return self.root / TEMPLATE_PATH.relative_to(ROOT)

    @property
    def lambdas_dir(self) -> Path:
        return self.root / LAMBDAS_DIR.relative_to(ROOT)

    @property
    def state_machines(self) -> dict[str, Path]:
        """The template parameter holding each state machine definition's key -> its ASL file."""
        return {
            "StateMachineDefinitionKey": self.root / STATE_MACHINE_PATH.relative_to(ROOT),
            "BatchStateMachineDefinitionKey": self.root / BATCH_STATE_MACHINE_PATH.relative_to(ROOT),
        }

    def check(self) -> SourceTree:
        missing = [str(p) for p in (self.template, self.lambdas_dir, *self.state_machines.values()) if not p.exists()]
        if missing:
            raise SourceTreeError(f"{self.root} is not laid out as the repository: it has no {', '.join(missing)}")
        return self


REPOSITORY = SourceTree()

# Template parameter holding each function's zip key -> the handler module the zip is built around.
LAMBDA_HANDLERS = {
    "SerializeImageDataCodeKey": "serialize_image_data",
    "ClassifyImageCodeKey": "classify_image",
    "FilterLowConfidenceCodeKey": "filter_low_confidence",
    "SummarizeBatchCodeKey": "summarize_batch",
}
# What every zip holds besides its handler: the package marker, the clients, the contract, the loggers.
SHARED_LAMBDA_MODULES = ("__init__.py", "clients.py", "contract.py", "logs.py", "metrics.py")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: builds do not depend on file times


@dataclass(frozen=True)
class Artifact:
    name: str
    data: bytes = field(repr=False)
    suffix: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.name}{self.suffix}"

    @property
    def key(self) -> str:
        """Content-addressed, so a changed artifact gets a new key and CloudFormation sees the change."""
        return f"artifacts/{self.name}/{self.sha256}{self.suffix}"


def build_lambda_zip(handler_module: str, lambdas_dir: Path = LAMBDAS_DIR) -> bytes:
    """The zip of one function: its handler and the shared modules, as package `lambdas`.

    Byte-for-byte reproducible: sorted entries, a fixed date and mode, no compression (the files
    are a few kilobytes, and stored bytes do not depend on the zlib version).
    """
    names = sorted({*SHARED_LAMBDA_MODULES, f"{handler_module}.py"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in names:
            info = zipfile.ZipInfo(f"lambdas/{name}", date_time=_ZIP_DATE)
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # Unix, whatever builds it
            archive.writestr(info, (lambdas_dir / name).read_bytes())
    return buffer.getvalue()


def build_artifacts(model_data_path: Path | None = None, sources: SourceTree = REPOSITORY) -> dict[str, Artifact]:
    """Every artifact the stack needs, by the template parameter that holds its key; model.tar.gz too
    when a path is given."""
    artifacts = {
        parameter: Artifact(handler, build_lambda_zip(handler, sources.lambdas_dir), ".zip")
        for parameter, handler in LAMBDA_HANDLERS.items()
    }
    for parameter, path in sources.state_machines.items():
        artifacts[parameter] = Artifact(path.name.removesuffix(".asl.json"), path.read_bytes(), ".asl.json")
    if model_data_path is not None:
        artifacts["ModelDataKey"] = Artifact("model", Path(model_data_path).read_bytes(), ".tar.gz")
    return artifacts


def artifact_digests(
    artifacts: dict[str, Artifact], model_image_id: str | None = None, sources: SourceTree = REPOSITORY
) -> dict[str, str]:
    """sha256 of everything a deployment ships, by name: the uploaded artifacts, the template and the
    model image's build inputs, and the model image's ID when it is known."""
    digests = {artifact.filename: artifact.sha256 for artifact in artifacts.values()}
    digests[manifest.TEMPLATE] = hashlib.sha256(sources.template.read_bytes()).hexdigest()
    digests[manifest.MODEL_IMAGE_INPUTS] = manifest.model_image_inputs_sha256()
    if model_image_id:
        digests[manifest.MODEL_IMAGE_ID] = model_image_id
    return digests
