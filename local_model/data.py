"""Data staging: CIFAR-100 bicycles (fine label 8) and motorcycles (fine label 48) as PNG folders.

Staged layout (also what `--data-dir` accepts), usable as SageMaker channels and, through the
`.lst` manifests (RecordIO .lst format: `index\\tlabel\\trelative_path`), by the built-in
image-classification algorithm:

    <root>/train/bicycle/*.png  <root>/train/motorcycle/*.png  <root>/train.lst
    <root>/test/bicycle/*.png   <root>/test/motorcycle/*.png   <root>/test.lst
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from local_model.artifact import CLASSES, IMAGE_SIZE
from local_model.progress import progress_bar

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"  # published by the dataset's authors
# CIFAR-100 fine label -> our class index (0 = bicycle, 1 = motorcycle).
FINE_LABELS = {8: 0, 48: 1}
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataError(Exception):
    """Base class for data staging errors; each names the file at fault."""


class DownloadError(DataError):
    """The dataset could not be downloaded."""


class ChecksumMismatchError(DataError):
    """A downloaded or given archive does not have the published checksum."""


class CorruptArchiveError(DataError):
    """The archive cannot be read or lacks the expected members."""


class MissingClassError(DataError):
    """An image folder lacks one of the class folders, or a class has no images."""


class UnreadableImageError(DataError):
    """An image file cannot be decoded."""


@dataclass
class ImageSet:
    images: np.ndarray  # (N, 32, 32, 3) uint8 RGB
    labels: np.ndarray  # (N,) int64 class indices into CLASSES
    paths: list[str]  # relative to the folder they were loaded from

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], [self.paths[i] for i in indices])


def md5_of(path: Path) -> str:
    with open(path, "rb") as f:
        return _md5_of_file(f)


def _md5_of_file(f: BinaryIO) -> str:
    digest = hashlib.md5()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR's pickles hold (dicts, lists, bytes, numpy arrays): any other global, the
    way a crafted pickle runs code, is refused. A second guard behind the checksum."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),  # arrays in protocol-5 pickles
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3 (a pure function)
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        return super().find_class(module, name)


def download(url: str, dest: Path, md5: str | None = CIFAR100_MD5, timeout_s: float = 60.0) -> Path:
    """Download `url` to `dest` with a progress bar; verify the MD5 checksum. Reuses a valid file."""
    dest = Path(dest)
    if dest.is_file() and (md5 is None or md5_of(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {e} (offline? pass --data-dir with staged images)") from e
    if md5 is not None and (actual := md5_of(partial)) != md5:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(f"{url}: MD5 {actual} does not match the published {md5}")
    partial.replace(dest)
    return dest


def _read_pickle_member(tar: tarfile.TarFile, archive: Path, name: str) -> dict:
    member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(f"cifar-100-python/{name}")), None)
    if member is None:
        raise CorruptArchiveError(f"{archive} has no cifar-100-python/{name} member")
    try:
        return _CifarUnpickler(tar.extractfile(member), encoding="bytes").load()  # checksum verified before
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as e:
        raise CorruptArchiveError(f"{archive}: member {member.name} is not a CIFAR pickle: {e}") from e


def extract_cifar100(archive: Path, out_dir: Path, md5: str = CIFAR100_MD5) -> Path:
    """Write the bicycle/motorcycle images of the CIFAR-100 python tarball as PNG folders + .lst files.
    The archive's MD5 is checked first, always (the published one unless told another): its pickles are
    read only from the very bytes that were hashed (one open file), never from a file that could have
    been swapped in between. MD5 catches corruption and a wrong file, not a crafted collision: the
    restricted unpickler is the guard behind it."""
    archive, out_dir = Path(archive), Path(out_dir)
    try:
        f = open(archive, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise CorruptArchiveError(f"{archive} cannot be read: {e}") from e
    with f:
        if (actual := _md5_of_file(f)) != md5:
            raise ChecksumMismatchError(f"{archive}: MD5 {actual} does not match the expected {md5}")
        f.seek(0)
        _extract_verified(f, archive, out_dir)
    return out_dir


def _extract_verified(f: BinaryIO, archive: Path, out_dir: Path) -> None:
    try:
        tar = tarfile.open(fileobj=f, mode="r:gz")  # noqa: SIM115 - the open itself is what can fail
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorruptArchiveError(f"{archive} is not a readable .tar.gz: {e}") from e
    with tar:
        for split in SPLITS:
            batch = _read_pickle_member(tar, archive, split)
            try:
                data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
                fine = list(batch[b"fine_labels"])
                names = [n.decode() for n in batch[b"filenames"]]
            except (KeyError, ValueError) as e:
                raise CorruptArchiveError(f"{archive}: {split} pickle lacks data/fine_labels/filenames: {e}") from e
            rows = []
            for index, fine_label in enumerate(fine):
                if fine_label not in FINE_LABELS:
                    continue
                label = FINE_LABELS[fine_label]
                rel = f"{CLASSES[label]}/{names[index]}"
                path = out_dir / split / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(data[index].transpose(1, 2, 0)).save(path)
                rows.append(f"{index}\t{label}\t{rel}")
            found = {int(r.split("\t")[1]) for r in rows}
            if missing := [CLASSES[c] for c in range(len(CLASSES)) if c not in found]:
                raise MissingClassError(f"{archive}: {split} split has no images of {', '.join(missing)}")
            (out_dir / f"{split}.lst").write_text("\n".join(rows) + "\n")


def stage_cifar100(out_dir: Path, cache_dir: Path, url: str = CIFAR100_URL, md5: str = CIFAR100_MD5) -> Path:
    """Download CIFAR-100 (cached) and stage the two classes into `out_dir`."""
    archive = download(url, Path(cache_dir) / "cifar-100-python.tar.gz", md5=md5)
    return extract_cifar100(archive, out_dir, md5=md5)


def read_image(path: Path) -> np.ndarray:
    """Decode any image file to (32, 32, 3) uint8 RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableImageError(f"{path}: cannot decode image: {e}") from e
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def load_image_folder(folder: Path) -> ImageSet:
    """Load `<folder>/<class>/*.png` for every class; labels come from the folder names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingClassError(f"{folder} is not a directory of class folders ({', '.join(CLASSES)})")
    images, labels, paths = [], [], []
    for label, name in enumerate(CLASSES):
        class_dir = folder / name
        files = sorted(p for p in class_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MissingClassError(f"{class_dir} is missing or holds no images (.png/.jpg)")
        for path in files:
            images.append(read_image(path))
            labels.append(label)
            paths.append(path.relative_to(folder).as_posix())
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64), paths)


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """Split indices into `n_folds` folds with the class balance of `labels`."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        for k, part in enumerate(np.array_split(idx, n_folds)):
            folds[k].extend(part.tolist())
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, holdout_indices), stratified; `fraction` of each class held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        held.extend(idx[: max(1, round(len(idx) * fraction))].tolist())
    held_arr = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), held_arr), held_arr


def synthetic_cifar100_tarball(path: Path, per_class: int = 3, others: int = 4, seed: int = 0) -> Path:
    """A tiny CIFAR-100 python tarball in the real pickle format (for tests and offline demos)."""
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        for split in SPLITS:
            fine = [8] * per_class + [48] * per_class + [3] * others
            n = len(fine)
            batch = {
                b"data": rng.integers(0, 256, size=(n, 3 * IMAGE_SIZE * IMAGE_SIZE), dtype=np.uint8),
                b"fine_labels": fine,
                b"coarse_labels": [0] * n,
                b"filenames": [f"img_{split}_{i:05d}.png".encode() for i in range(n)],
                b"batch_label": split.encode(),
            }
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-100-python/{split}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path
