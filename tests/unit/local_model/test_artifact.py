"""local_model.artifact.unpack_model_tar on both paths: with PEP 706 extraction filters (Python >= 3.11.4)
and without them (the model image's Debian 12 Python, 3.11.2). Same files out, same archives refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from local_model import artifact
from local_model.artifact import ModelFormatError, pack_model_tar, unpack_model_tar

PATHS = [pytest.param(True, id="with-filters"), pytest.param(False, id="without-filters")]


@pytest.fixture(params=PATHS)
def extraction_path(request, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param and not hasattr(tarfile, "data_filter"):
        pytest.fail("this Python has no tarfile extraction filters: the filtered path is not tested here")
    monkeypatch.setattr(artifact, "HAS_EXTRACTION_FILTERS", request.param)
    return request.param


def write_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def test_a_packed_model_folder_comes_back_byte_for_byte(tmp_path: Path, extraction_path: bool) -> None:
    source = tmp_path / "model"
    (source / "code").mkdir(parents=True)
    (source / "model.json").write_text('{"classes": ["bicycle", "motorcycle"]}')
    (source / "model.pt").write_bytes(bytes(range(256)) * 4000)  # over one 1 MiB read
    (source / "code" / "note.txt").write_text("nested")
    tarball = pack_model_tar(source, tmp_path / "model.tar.gz")

    out = unpack_model_tar(tarball, tmp_path / "out")

    for name in ("model.json", "model.pt", "code/note.txt"):
        assert (out / name).read_bytes() == (source / name).read_bytes()
        assert (out / name).stat().st_mode & 0o777 == 0o644


def test_a_sagemaker_style_archive_with_a_dot_folder_entry_is_accepted(tmp_path: Path, extraction_path: bool) -> None:
    dot = tarfile.TarInfo(".")
    dot.type = tarfile.DIRTYPE
    tarball = write_tar(tmp_path / "m.tar.gz", (dot, None), regular("./model.json", b"{}"))

    assert (unpack_model_tar(tarball, tmp_path / "out") / "model.json").read_bytes() == b"{}"


def symlink_member() -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo("model.pt")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info, None


def device_member() -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo("model.pt")
    info.type = tarfile.CHRTYPE
    return info, None


@pytest.mark.parametrize(
    ("member", "message"),
    [
        pytest.param(regular("../escaped.txt", b"x"), "outside the model folder", id="parent-path"),
        pytest.param(regular("/tmp/absolute.txt", b"x"), "outside the model folder", id="absolute-path"),
        pytest.param(symlink_member(), "not a regular file", id="symlink"),
        pytest.param(device_member(), "not a regular file", id="device"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_written(
    tmp_path: Path, extraction_path: bool, member: tuple, message: str
) -> None:
    tarball = write_tar(tmp_path / "bad.tar.gz", regular("model.json", b"{}"), member)
    dest = tmp_path / "scratch" / "out"

    with pytest.raises(ModelFormatError, match=message):
        unpack_model_tar(tarball, dest)

    assert list(dest.iterdir()) == []  # checked before anything is extracted
    assert not (tmp_path / "scratch" / "escaped.txt").exists()


def test_a_truncated_archive_is_a_model_format_error(tmp_path: Path, extraction_path: bool) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "model.pt").write_bytes(b"w" * 10_000)
    tarball = pack_model_tar(source, tmp_path / "model.tar.gz")
    tarball.write_bytes(tarball.read_bytes()[:40])

    with pytest.raises(ModelFormatError, match=r"not a readable model\.tar\.gz"):
        unpack_model_tar(tarball, tmp_path / "out")
