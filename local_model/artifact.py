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
    """Extract model.tar.gz: regular files and folders only, nothing outside `dest`, on every Python 3.11.

    Python 3.11.4 added extraction filters (PEP 706); the model image's Debian 12 Python is 3.11.2, which has
    none, and a user's host may have either. Both paths check the members the same way: a link, a device or
    a path leaving `dest` is a ModelFormatError and nothing is extracted."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            members = tar.getmembers()
            check_members(members, dest)
            if HAS_EXTRACTION_FILTERS:
                tar.extractall(dest, members=members, filter="data")
            else:
                extract_checked(tar, members, dest)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelFormatError(f"{tar_path} is not a readable model.tar.gz: {e}") from e
    return dest


# PEP 706's filters exist from 3.11.4 (and in some distributions' backports): tell by the function, not the
# version number.
HAS_EXTRACTION_FILTERS = hasattr(tarfile, "data_filter")


def check_members(members: list[tarfile.TarInfo], dest: Path) -> None:
    """Refuses an archive holding anything but regular files and folders, or a path outside `dest`."""
    root = dest.resolve()
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise ModelFormatError(f"model.tar.gz holds {member.name!r}, which is not a regular file or a folder")
        target = (root / member.name).resolve()
        if target != root and root not in target.parents:
            raise ModelFormatError(f"model.tar.gz holds {member.name!r}, a path outside the model folder")


def extract_checked(tar: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path) -> None:
    """What the "data" filter does for the members check_members let through, without the filter: files
    written with their contents and mode 0o644, owner and times not applied."""
    for member in members:
        target = dest / member.name
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        with source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        target.chmod(0o644)
