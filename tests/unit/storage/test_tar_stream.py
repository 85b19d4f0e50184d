"""iter_tar: members as bytes, no extraction, skipped non-regular members, truncation errors."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from autolabel.storage.errors import FormatError
from autolabel.storage.local import LocalStore
from autolabel.storage.tar_stream import iter_tar


def _add(archive: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _archive(members: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members:
            _add(archive, name, data)
    return out.getvalue()


MEMBERS = [(f"sa1b/sa_{i}.jpg", os.urandom(700 + 37 * i)) for i in range(6)]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_members_roundtrip_from_a_stream(mode: str) -> None:
    data = _archive(MEMBERS, mode)
    assert list(iter_tar(io.BytesIO(data))) == MEMBERS


def test_hostile_members_are_never_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        _add(archive, "../../escape.txt", b"dotdot")
        _add(archive, "/abs/escape.txt", b"absolute")
        _add(archive, "link", b"", tarfile.SYMTYPE)
        _add(archive, "hard", b"", tarfile.LNKTYPE)
        _add(archive, "folder", b"", tarfile.DIRTYPE)
        _add(archive, "fifo", b"", tarfile.FIFOTYPE)
        _add(archive, "ok.json", b"{}")
    assert list(iter_tar(io.BytesIO(out.getvalue()))) == [
        ("../../escape.txt", b"dotdot"),
        ("/abs/escape.txt", b"absolute"),
        ("ok.json", b"{}"),
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written next to or above the cwd
    assert not (tmp_path.parent / "escape.txt").exists()


def test_reads_from_a_store_and_a_path(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("shards/sa_000.tar", _archive(MEMBERS))
    with store.open("shards/sa_000.tar") as stream:
        assert list(iter_tar(stream, name="shards/sa_000.tar")) == MEMBERS
    path = tmp_path / "store" / "shards" / "sa_000.tar"
    assert [name for name, _ in iter_tar(path)] == [name for name, _ in MEMBERS]


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_every_truncation_before_the_end_marker_is_an_error(mode: str) -> None:
    data = _archive(MEMBERS, mode)
    # Uncompressed: the end-of-archive zero block starts right after the last member.
    end = sum(512 + (len(d) + 511) // 512 * 512 for _, d in MEMBERS) if mode == "w" else len(data)
    for cut in range(0, end, 97):
        with pytest.raises(FormatError, match=r"tar shard\.tar"):
            list(iter_tar(io.BytesIO(data[:cut]), name="shard.tar"))


def test_cut_at_a_member_boundary_is_an_error() -> None:
    data = _archive(MEMBERS)
    boundary = 512 + (len(MEMBERS[0][1]) + 511) // 512 * 512
    boundary += 512 + (len(MEMBERS[1][1]) + 511) // 512 * 512
    members = iter_tar(io.BytesIO(data[:boundary]), name="cut.tar")
    assert [next(members)[0], next(members)[0]] == [MEMBERS[0][0], MEMBERS[1][0]]
    with pytest.raises(FormatError, match="truncated"):
        next(members)


def test_garbage_and_empty_input() -> None:
    with pytest.raises(FormatError):
        list(iter_tar(io.BytesIO(b"")))
    with pytest.raises(FormatError):
        list(iter_tar(io.BytesIO(b"not a tar archive at all" * 40)))
    data = bytearray(_archive(MEMBERS))
    data[512 * 3 + 100 : 512 * 3 + 200] = b"\x07" * 100  # inside the second header
    with pytest.raises(FormatError):
        list(iter_tar(io.BytesIO(bytes(data))))


def test_oversized_member_is_rejected() -> None:
    data = _archive([("small", b"x" * 10), ("big", b"y" * 5000)])
    members = iter_tar(io.BytesIO(data), max_member_bytes=4096)
    assert next(members) == ("small", b"x" * 10)
    with pytest.raises(FormatError, match="'big' is 5000 bytes"):
        next(members)
