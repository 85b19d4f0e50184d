"""The weights ledger: records digests, notices a change, survives concurrent writers and replaces
a corrupt file with a warning."""

import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autolabel.storage.weight_ledger import LEDGER_FILENAME, WeightLedger

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def weights_file(folder: Path, name: str = "w.pth", content: bytes = b"weights") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def test_a_sighting_is_recorded_with_size_mtime_and_times(tmp_path: Path) -> None:
    clock = Clock()
    ledger = WeightLedger(tmp_path, clock=clock)
    path = weights_file(tmp_path)
    first = ledger.record(path, sha256="a" * 64)
    assert first.changed_from is None
    clock.now = T0 + timedelta(hours=1)
    again = ledger.record(path, sha256="a" * 64)
    assert again.changed_from is None
    raw = json.loads((tmp_path / LEDGER_FILENAME).read_text())
    assert raw == {
        "format": 1,
        "files": {
            "w.pth": {
                "sha256": "a" * 64,
                "size": len(b"weights"),
                "mtime_ns": path.stat().st_mtime_ns,
                "first_seen": "2024-05-01T12:00:00+00:00",
                "last_seen": "2024-05-01T13:00:00+00:00",
                "layout_verified": {},
                "previous": None,
            }
        },
    }
    assert WeightLedger(tmp_path).entries()["w.pth"] == again.entry


def test_a_changed_digest_is_reported_with_the_previous_one(tmp_path: Path) -> None:
    clock = Clock()
    ledger = WeightLedger(tmp_path, clock=clock)
    path = weights_file(tmp_path)
    ledger.record(path, sha256="a" * 64)
    ledger.record_layout("w.pth", sha256="a" * 64, model_name="m", tensors=12)
    assert ledger.entries()["w.pth"].layout_verified == {"m": 12}
    clock.now = T0 + timedelta(days=2)
    path.write_bytes(b"other weights")
    changed = ledger.record(path, sha256="b" * 64)
    assert changed.changed_from is not None
    assert changed.changed_from.sha256 == "a" * 64
    assert changed.changed_from.first_seen == "2024-05-01T12:00:00+00:00"
    entry = ledger.entries()["w.pth"]
    assert entry.sha256 == "b" * 64
    assert entry.first_seen == "2024-05-03T12:00:00+00:00"
    assert entry.size == len(b"other weights")
    assert entry.layout_verified == {}  # proven for the old digest only
    assert entry.previous == changed.changed_from
    assert ledger.record(path, sha256="b" * 64).changed_from is None  # reported once


def test_a_layout_for_a_digest_the_file_no_longer_has_is_not_recorded(tmp_path: Path) -> None:
    ledger = WeightLedger(tmp_path)
    ledger.record(weights_file(tmp_path), sha256="b" * 64)
    ledger.record_layout("w.pth", sha256="a" * 64, model_name="m", tensors=12)
    ledger.record_layout("absent.pth", sha256="a" * 64, model_name="m", tensors=12)
    assert ledger.entries()["w.pth"].layout_verified == {}
    assert "absent.pth" not in ledger.entries()


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    """Each update reads, changes and rewrites the whole file: without the lock, writers that
    read the same version drop each other's entries."""
    writers, per_writer = 4, 15
    files = [
        weights_file(tmp_path, f"w{i}-{j}.pth") for i in range(writers) for j in range(per_writer)
    ]
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        ledger = WeightLedger(tmp_path)  # its own handle, as another process has
        start.wait()
        try:
            for path in files[i * per_writer : (i + 1) * per_writer]:
                ledger.record(path, sha256=f"{i:064x}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(WeightLedger(tmp_path).entries()) == sorted(p.name for p in files)
    assert not list(tmp_path.glob(".weights-ledger.*.tmp"))


WRITER = """
import sys
from pathlib import Path
from autolabel.storage.weight_ledger import WeightLedger
folder, tag = Path(sys.argv[1]), sys.argv[2]
ledger = WeightLedger(folder)
for j in range(25):
    path = folder / f"{tag}-{j}.pth"
    path.write_bytes(tag.encode())
    ledger.record(path, sha256=tag * 64)
"""


def test_two_writer_processes_lose_no_update(tmp_path: Path) -> None:
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag]) for tag in "ab"]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    entries = WeightLedger(tmp_path).entries()
    assert sorted(entries) == sorted(f"{tag}-{j}.pth" for tag in "ab" for j in range(25))
    assert {entry.sha256 for entry in entries.values()} == {"a" * 64, "b" * 64}


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00", b'{"format": 1, "files": {"w.pth": {"sha256": 3}}}', b"[]"],
    ids=["truncated", "binary", "wrong-types", "wrong-shape"],
)
def test_a_corrupt_ledger_is_moved_aside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    (tmp_path / LEDGER_FILENAME).write_bytes(content)
    ledger = WeightLedger(tmp_path)
    assert ledger.entries() == {}
    with caplog.at_level(logging.WARNING, logger="autolabel.storage.weight_ledger"):
        sighting = ledger.record(weights_file(tmp_path), sha256="a" * 64)
    assert sighting.changed_from is None
    assert "is corrupt" in caplog.text
    assert (tmp_path / f"{LEDGER_FILENAME}.corrupt").read_bytes() == content
    assert list(WeightLedger(tmp_path).entries()) == ["w.pth"]


def test_an_unwritable_folder_only_loses_the_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")
    ledger = WeightLedger(blocked)  # mkdir and the lock file fail: it is a file
    with caplog.at_level(logging.WARNING, logger="autolabel.storage.weight_ledger"):
        sighting = ledger.record(weights_file(tmp_path), sha256="a" * 64)
    assert sighting.entry.sha256 == "a" * 64
    assert "cannot update the weights ledger" in caplog.text
