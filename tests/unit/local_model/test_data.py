"""Data staging: CIFAR-100 extraction from a synthetic tarball in the real format, download, bad data."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from local_model import data
from local_model.data import (
    ChecksumMismatchError,
    CorruptArchiveError,
    DownloadError,
    MissingClassError,
    UnreadableImageError,
)


@pytest.fixture
def tarball(tmp_path: Path) -> Path:
    return data.synthetic_cifar100_tarball(tmp_path / "cifar-100-python.tar.gz", per_class=3, others=4)


def test_extract_writes_only_the_two_classes_as_pngs_with_lst_manifests(tarball, tmp_path):
    out = data.extract_cifar100(tarball, tmp_path / "staged", md5=data.md5_of(tarball))
    for split in ("train", "test"):
        rows = [line.split("\t") for line in (out / f"{split}.lst").read_text().splitlines()]
        assert len(rows) == 6
        # index \t label \t relative path, label 0 = bicycle (fine 8), 1 = motorcycle (fine 48)
        assert [int(r[1]) for r in rows] == [0, 0, 0, 1, 1, 1]
        assert all(r[2].startswith(("bicycle/", "motorcycle/")) for r in rows)
        assert all((out / split / r[2]).is_file() for r in rows)
        images = data.load_image_folder(out / split)
        assert images.images.shape == (6, 32, 32, 3)
        assert images.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_extracted_pixels_equal_the_pickled_ones(tarball, tmp_path):
    import pickle
    import tarfile

    out = data.extract_cifar100(tarball, tmp_path / "staged", md5=data.md5_of(tarball))
    with tarfile.open(tarball) as tar:
        batch = pickle.load(tar.extractfile("cifar-100-python/train"), encoding="bytes")
    first = np.asarray(batch[b"data"][0], dtype=np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
    name = batch[b"filenames"][0].decode()
    assert np.array_equal(np.asarray(Image.open(out / "train" / "bicycle" / name)), first)


def test_checksum_mismatch_names_the_archive(tarball, tmp_path):
    with pytest.raises(ChecksumMismatchError, match=str(tarball.name)):
        data.extract_cifar100(tarball, tmp_path / "out", md5="0" * 32)


def crafted_tarball(path: Path, marker: Path) -> Path:
    """A CIFAR-shaped tarball whose pickle, if unpickled, creates `marker`: how a pickle runs code."""

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    blob = pickle.dumps({b"data": Exploit()})
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            info = tarfile.TarInfo(f"cifar-100-python/{split}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_an_archive_is_checksum_verified_before_anything_is_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    archive = crafted_tarball(tmp_path / "cifar-100-python.tar.gz", marker)
    # No md5 given: the published one applies, whatever the entry point (stage_cifar100 or a direct call).
    with pytest.raises(ChecksumMismatchError, match="does not match the expected"):
        data.extract_cifar100(archive, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_crafted_pickle_is_refused_even_with_a_matching_checksum(tmp_path):
    marker = tmp_path / "code-ran"
    archive = crafted_tarball(tmp_path / "cifar-100-python.tar.gz", marker)
    with pytest.raises(CorruptArchiveError, match=r"global pathlib.*Path\.touch is not allowed"):
        data.extract_cifar100(archive, tmp_path / "out", md5=data.md5_of(archive))
    assert not marker.exists()


def test_staging_a_cached_archive_verifies_it_too(tarball, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "cifar-100-python.tar.gz"
    cached.write_bytes(tarball.read_bytes())
    staged = data.stage_cifar100(tmp_path / "staged", cache, url="http://127.0.0.1:9/unused", md5=data.md5_of(tarball))
    assert len(data.load_image_folder(staged / "train")) == 6


def test_corrupt_tarball_is_a_named_error(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(CorruptArchiveError, match=r"bad\.tar\.gz"):
        data.extract_cifar100(bad, tmp_path / "out", md5=data.md5_of(bad))


def test_archive_without_a_class_is_a_missing_class_error(tmp_path):
    tarball = data.synthetic_cifar100_tarball(tmp_path / "c.tar.gz", per_class=0, others=3)
    with pytest.raises(MissingClassError, match="bicycle, motorcycle"):
        data.extract_cifar100(tarball, tmp_path / "out", md5=data.md5_of(tarball))


@pytest.fixture
def http_server(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_over_http_verifies_the_checksum(tarball, http_server, tmp_path):
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    dest = data.download(f"{http_server}/{tarball.name}", tmp_path / "cache" / "x.tar.gz", md5=md5)
    assert dest.read_bytes() == tarball.read_bytes()
    staged = data.stage_cifar100(tmp_path / "staged", tmp_path / "cache2", url=f"{http_server}/{tarball.name}", md5=md5)
    assert len(data.load_image_folder(staged / "train")) == 6


def test_download_with_wrong_checksum_leaves_no_file(tarball, http_server, tmp_path):
    dest = tmp_path / "cache" / "x.tar.gz"
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        data.download(f"{http_server}/{tarball.name}", dest, md5="f" * 32)
    assert not dest.exists() and not dest.with_name("x.tar.gz.part").exists()


def test_download_failure_is_a_named_error(http_server, tmp_path):
    with pytest.raises(DownloadError, match="--data-dir"):
        data.download(f"{http_server}/missing.tar.gz", tmp_path / "x.tar.gz")


def _save(path: Path, mode: str, size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode in ("L", "P") else (10, 20, 30, 255)[: len(mode)]).save(path)


def test_load_image_folder_converts_modes_and_sizes(tmp_path):
    _save(tmp_path / "bicycle" / "a.png", "RGBA")
    _save(tmp_path / "bicycle" / "b.png", "L", size=(64, 48))
    _save(tmp_path / "motorcycle" / "c.png", "P")
    images = data.load_image_folder(tmp_path)
    assert images.images.shape == (3, 32, 32, 3) and images.images.dtype == np.uint8
    assert images.labels.tolist() == [0, 0, 1]
    assert images.paths == ["bicycle/a.png", "bicycle/b.png", "motorcycle/c.png"]


def test_missing_class_folder_is_named(tmp_path):
    _save(tmp_path / "bicycle" / "a.png", "RGB")
    with pytest.raises(MissingClassError, match="motorcycle"):
        data.load_image_folder(tmp_path)


def test_unreadable_image_names_the_file(tmp_path):
    _save(tmp_path / "bicycle" / "a.png", "RGB")
    _save(tmp_path / "motorcycle" / "b.png", "RGB")
    (tmp_path / "motorcycle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UnreadableImageError, match=r"broken\.png"):
        data.load_image_folder(tmp_path)


def test_folds_and_holdout_are_stratified_and_disjoint():
    labels = np.array([0] * 50 + [1] * 50)
    folds = data.stratified_folds(labels, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    assert all((labels[f] == 0).sum() == 10 for f in folds)
    train, held = data.holdout_split(labels, 0.1, seed=0)
    assert len(held) == 10 and (labels[held] == 1).sum() == 5
    assert not set(train) & set(held) and len(train) + len(held) == 100


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_restricted_unpickler_reads_cifar_shaped_pickles_of_every_protocol(protocol):
    """CIFAR-100's own pickles are Python 2 ones (protocol 2); what numpy writes differs by protocol."""
    batch = {b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), b"fine_labels": [8, 48]}
    blob = pickle.dumps(batch, protocol=protocol)
    loaded = data._CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"fine_labels"] == [8, 48]
