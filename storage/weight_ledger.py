"""The weights ledger: the digest of every weights file seen, so that a later change is noticed.

A small JSON file in the weights directory, `<weights_dir>/weights-ledger.json`, keyed by file
name (`groundingdino_swint_ogc.pth`):

```json
{
  "format": 1,
  "files": {
    "groundingdino_swint_ogc.pth": {
      "sha256": "3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799",
      "size": 693997677,
      "mtime_ns": 1714564800000000000,
      "first_seen": "2024-05-01T12:00:00+00:00",
      "last_seen": "2024-05-02T08:30:00+00:00",
      "layout_verified": {"grounding-dino-swint-ogc": 940},
      "previous": {"sha256": "...", "first_seen": "...", "last_seen": "..."}
    }
  }
}
```

`first_seen` / `last_seen` (UTC, ISO 8601) belong to the current `sha256`; `layout_verified` maps
each model name whose architecture this digest was proven to load into to the number of tensors
checked (reset when the digest changes); `previous` is the digest the current one replaced, or
null. Every update takes an exclusive `fcntl.flock` on `weights-ledger.json.lock` (so processes
and threads updating at once lose nothing), and writes a temporary file in the same directory
that replaces the ledger atomically (readers never see a partial file). A ledger that cannot be
parsed is moved aside to `weights-ledger.json.corrupt` with a warning and started afresh; a
weights directory that cannot be written only loses the record, with a warning.
"""

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from autolabel.storage.file_lock import exclusive_lock

LEDGER_FILENAME = "weights-ledger.json"
FORMAT = 1

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LedgerFormatError(ValueError):
    """A ledger file that is not the JSON this module writes (replaced, never raised out)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRecord:
    """A digest a file had, and when it was first and last seen with it (UTC ISO 8601)."""

    sha256: str
    first_seen: str
    last_seen: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """What the ledger knows about one weights file (see the module docstring's format).

    Attributes:
        sha256: Lowercase hex digest of the file's content when last seen.
        size: Size in bytes when last seen.
        mtime_ns: Modification time in nanoseconds when last seen.
        first_seen: When this digest was first seen (UTC ISO 8601).
        last_seen: When this digest was last seen (UTC ISO 8601).
        layout_verified: Model name -> tensors checked, for each architecture this digest was
            proven to load into.
        previous: The digest this one replaced, or None.
    """

    sha256: str
    size: int
    mtime_ns: int
    first_seen: str
    last_seen: str
    layout_verified: Mapping[str, int] = field(default_factory=dict)
    previous: DigestRecord | None = None


@dataclass(frozen=True, slots=True)
class Sighting:
    """The outcome of recording a file: its entry now, and the record of the digest it had
    before when this sighting found a different one (None for a new or unchanged file)."""

    entry: LedgerEntry
    changed_from: DigestRecord | None


def utc_now() -> datetime:
    """The current time in UTC (the ledger's default clock)."""
    return datetime.now(UTC)


def _record(raw: Any) -> DigestRecord:
    if not isinstance(raw, dict):
        raise LedgerFormatError(f"expected a digest record object, got {type(raw).__name__}")
    return DigestRecord(
        sha256=_typed(raw, "sha256", str),
        first_seen=_typed(raw, "first_seen", str),
        last_seen=_typed(raw, "last_seen", str),
    )


def _typed(raw: dict[str, Any], key: str, kind: type[T]) -> T:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise LedgerFormatError(f"expected {key!r} to be {kind.__name__}, got {value!r}")
    return value


def _entry(raw: Any) -> LedgerEntry:
    if not isinstance(raw, dict):
        raise LedgerFormatError(f"expected a file entry object, got {type(raw).__name__}")
    verified = raw.get("layout_verified", {})
    if not isinstance(verified, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in verified.values()
    ):
        raise LedgerFormatError(f"expected layout_verified to map names to counts, got {verified}")
    previous = raw.get("previous")
    return LedgerEntry(
        sha256=_typed(raw, "sha256", str),
        size=_typed(raw, "size", int),
        mtime_ns=_typed(raw, "mtime_ns", int),
        first_seen=_typed(raw, "first_seen", str),
        last_seen=_typed(raw, "last_seen", str),
        layout_verified={str(k): v for k, v in verified.items()},
        previous=None if previous is None else _record(previous),
    )


def parse_ledger(data: bytes) -> dict[str, LedgerEntry]:
    """File name -> entry of a ledger file's content.

    Raises:
        LedgerFormatError: The content is not a format-1 ledger in UTF-8 JSON.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerFormatError(f"expected UTF-8 JSON, got {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise LedgerFormatError(f"expected an object with format {FORMAT}")
    files = raw.get("files")
    if not isinstance(files, dict):
        raise LedgerFormatError(f"expected 'files' to be an object, got {type(files).__name__}")
    return {str(name): _entry(entry) for name, entry in files.items()}


def _dump(entries: Mapping[str, LedgerEntry]) -> str:
    files: dict[str, Any] = {}
    for name, entry in sorted(entries.items()):
        previous = entry.previous
        files[name] = {
            "sha256": entry.sha256,
            "size": entry.size,
            "mtime_ns": entry.mtime_ns,
            "first_seen": entry.first_seen,
            "last_seen": entry.last_seen,
            "layout_verified": dict(sorted(entry.layout_verified.items())),
            "previous": None
            if previous is None
            else {
                "sha256": previous.sha256,
                "first_seen": previous.first_seen,
                "last_seen": previous.last_seen,
            },
        }
    return json.dumps({"format": FORMAT, "files": files}, indent=2) + "\n"


class WeightLedger:
    """The ledger of one weights directory (`<weights_dir>/weights-ledger.json`).

    Each method reads the file afresh: several processes may share the directory.
    """

    def __init__(self, weights_dir: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.weights_dir = weights_dir
        self.path = weights_dir / LEDGER_FILENAME
        self._clock = clock

    def entries(self) -> dict[str, LedgerEntry]:
        """File name -> entry, as last written (an unreadable ledger reads as empty)."""
        return self._read(repair=False)

    def record(self, path: Path, *, sha256: str) -> Sighting:
        """Record that the file `path` (in the weights directory) now has digest `sha256`.

        A new digest for a known file name starts a new entry (first seen now, no verified
        layout) whose `previous` is the old digest, and the sighting reports that old digest.

        Args:
            path: The weights file; its name is the ledger key, its size and mtime are recorded.
            sha256: The file's lowercase hex digest, computed by the caller.
        """
        stat = path.stat()
        now = self._clock().astimezone(UTC).isoformat(timespec="seconds")

        def change(entries: dict[str, LedgerEntry]) -> Sighting:
            old = entries.get(path.name)
            if old is not None and old.sha256 == sha256:
                entry = replace(old, size=stat.st_size, mtime_ns=stat.st_mtime_ns, last_seen=now)
                entries[path.name] = entry
                return Sighting(entry, None)
            before = None
            if old is not None:
                before = DigestRecord(
                    sha256=old.sha256, first_seen=old.first_seen, last_seen=old.last_seen
                )
            entry = LedgerEntry(
                sha256=sha256,
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                first_seen=now,
                last_seen=now,
                previous=before,
            )
            entries[path.name] = entry
            return Sighting(entry, before)

        return self._update(change)

    def record_layout(self, filename: str, *, sha256: str, model_name: str, tensors: int) -> None:
        """Record that `filename` with digest `sha256` loads into `model_name` (`tensors`
        tensors checked). Nothing is recorded if the file's digest has changed meanwhile."""

        def change(entries: dict[str, LedgerEntry]) -> None:
            entry = entries.get(filename)
            if entry is not None and entry.sha256 == sha256:
                verified = {**entry.layout_verified, model_name: tensors}
                entries[filename] = replace(entry, layout_verified=verified)

        self._update(change)

    def _update(self, change: Callable[[dict[str, LedgerEntry]], T]) -> T:
        """Apply `change` to the entries and write them back, under the lock."""
        try:
            with self._locked():
                entries = self._read(repair=True)
                result = change(entries)
                self._write(entries)
                return result
        except OSError as exc:
            logger.warning(
                "cannot update the weights ledger %s (%s); this sighting is not recorded",
                self.path,
                exc,
            )
            return change(self._read(repair=False))

    def _locked(self) -> AbstractContextManager[None]:
        return exclusive_lock(self.path.with_name(self.path.name + ".lock"))

    def _read(self, *, repair: bool) -> dict[str, LedgerEntry]:
        """The entries; a corrupt ledger reads as empty and (with `repair`, under the lock) is
        moved aside to `<ledger>.corrupt` so that the next write starts afresh."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("cannot read the weights ledger %s (%s); ignoring it", self.path, exc)
            return {}
        try:
            return parse_ledger(data)
        except LedgerFormatError as exc:
            if repair:
                aside = self.path.with_name(self.path.name + ".corrupt")
                self.path.replace(aside)
                logger.warning(
                    "the weights ledger %s is corrupt (%s); moved it to %s and started a new one",
                    self.path,
                    exc,
                    aside,
                )
            return {}

    def _write(self, entries: Mapping[str, LedgerEntry]) -> None:
        """Write a temporary file next to the ledger, then atomically replace the ledger."""
        fd, name = tempfile.mkstemp(dir=self.weights_dir, prefix=".weights-ledger.", suffix=".tmp")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o644)  # mkstemp makes it private; the ledger is not
                handle.write(_dump(entries))
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
