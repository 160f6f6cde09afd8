"""The model artifact without the model code: the files of a model directory, its class names, and the
reproducible model.tar.gz around it. No torch here, so that commands which only move or check a model
(deploy, up, promotion, the CLI's start-up) do not pay for importing it; local_model.classifier loads it.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"
CLASSES = ("bicycle", "motorcycle")
IMAGE_SIZE = 32  # pixels, square


class ModelFormatError(Exception):
    """A model directory or model.tar.gz is missing files or does not match this code."""


def pack_model_tar(model_dir: Path, tar_path: Path) -> Path:
    """Pack a model directory into a byte-for-byte reproducible model.tar.gz."""
    model_dir, tar_path = Path(model_dir), Path(tar_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(model_dir).as_posix())
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with open(tar_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    return tar_path


def unpack_model_tar(tar_path: Path, dest: Path) -> Path:
    """Extract model.tar.gz (regular files only, no paths outside `dest`)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelFormatError(f"{tar_path} is not a readable model.tar.gz: {e}") from e
    return dest
