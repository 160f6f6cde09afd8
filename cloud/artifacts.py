"""What a deployment ships, built reproducibly and addressed by content: the Lambda zips, the state machine
definitions, model.tar.gz; and the sha256 of each, with the template's and the model image's, which the
manifest records (cloud/manifest.py) and a promotion checks."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cloud import manifest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "cloud" / "template.yaml"
STATE_MACHINE_PATH = ROOT / "statemachine" / "image_classification.asl.json"
BATCH_STATE_MACHINE_PATH = ROOT / "statemachine" / "batch_classification.asl.json"
LAMBDAS_DIR = ROOT / "lambdas"

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


def build_artifacts(model_data_path: Path | None = None) -> dict[str, Artifact]:
    """Every artifact the stack needs, by the template parameter that holds its key; model.tar.gz too
    when a path is given."""
    artifacts = {
        parameter: Artifact(handler, build_lambda_zip(handler), ".zip")
        for parameter, handler in LAMBDA_HANDLERS.items()
    }
    artifacts["StateMachineDefinitionKey"] = Artifact(
        "image_classification", STATE_MACHINE_PATH.read_bytes(), ".asl.json"
    )
    artifacts["BatchStateMachineDefinitionKey"] = Artifact(
        "batch_classification", BATCH_STATE_MACHINE_PATH.read_bytes(), ".asl.json"
    )
    if model_data_path is not None:
        artifacts["ModelDataKey"] = Artifact("model", Path(model_data_path).read_bytes(), ".tar.gz")
    return artifacts


def artifact_digests(artifacts: dict[str, Artifact], model_image_id: str | None = None) -> dict[str, str]:
    """sha256 of everything a deployment ships, by name: the uploaded artifacts, the template and the
    model image's build inputs, and the model image's ID when it is known."""
    digests = {artifact.filename: artifact.sha256 for artifact in artifacts.values()}
    digests[manifest.TEMPLATE] = hashlib.sha256(TEMPLATE_PATH.read_bytes()).hexdigest()
    digests[manifest.MODEL_IMAGE_INPUTS] = manifest.model_image_inputs_sha256()
    if model_image_id:
        digests[manifest.MODEL_IMAGE_ID] = model_image_id
    return digests
