"""Files built from other files (exported graphs, compiled engines, measured choices), cached on
disk under the key of everything they depend on.

An entry is a folder `<root>/<label>-<digest>/` holding the built file and `entry.json` (the key,
the file's size and sha256). The digest is a sha256 of the key, so a change of any input (weights
sha256, exporter or runtime version, device model, precision, shape profile) is another entry.
An entry whose `entry.json` is missing or unreadable, whose key differs, or whose file is missing
or has another size or sha256 is rebuilt, with a warning saying why. Builds run under a per-entry
file lock (concurrent workers on one host build once) into a temporary folder that is renamed
into place, so a build killed half-way leaves no entry behind.
"""

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autolabel.models.weight_files import sha256_of
from autolabel.storage.file_lock import exclusive_lock

logger = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
Key = Mapping[str, Any]


def key_digest(key: Key) -> str:
    """sha256 of the key's canonical JSON (sorted keys), first 24 hex digits."""
    canonical = json.dumps(dict(key), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class ArtifactCache:
    """Built files under `root`, one folder per key (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry_dir(self, label: str, key: Key) -> Path:
        """Folder of the entry of `key` (`label` only makes it readable, e.g. "sam-l0-encoder")."""
        return self.root / f"{label}-{key_digest(key)}"

    def get(self, label: str, key: Key, filename: str, build: Callable[[Path], None]) -> Path:
        """The path of the cached file, built by `build(path)` first when the entry is absent or
        not valid.

        Args:
            label: Readable prefix of the entry folder.
            key: Everything the file depends on (JSON-serialisable values).
            filename: Name of the built file inside the entry.
            build: Writes the file at the path it is given.
        """
        entry = self.entry_dir(label, key)
        with exclusive_lock(self.root / f".{entry.name}.lock"):
            problem = self._problem(entry, key, filename)
            if problem is None:
                return entry / filename
            if problem != "absent":
                logger.warning("rebuilding the cached %s in %s: %s", filename, entry, problem)
            self._build(entry, key, filename, build)
        return entry / filename

    def _problem(self, entry: Path, key: Key, filename: str) -> str | None:
        """Why the entry cannot be used ("absent" when there is none), or None."""
        if not entry.exists():
            return "absent"
        try:
            meta = json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))
            recorded_key, size, digest = meta["key"], int(meta["size"]), str(meta["sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"its {ENTRY_FILE} is unreadable ({exc.__class__.__name__})"
        if recorded_key != json.loads(json.dumps(dict(key), default=str)):
            return "it was built for another key"
        path = entry / filename
        if not path.is_file():
            return f"{filename} is missing"
        if path.stat().st_size != size or sha256_of(path) != digest:
            return f"{filename} does not match its recorded size and sha256 (corrupt)"
        return None

    def _build(self, entry: Path, key: Key, filename: str, build: Callable[[Path], None]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{entry.name}."))
        try:
            path = staging / filename
            build(path)
            meta = {
                "key": json.loads(json.dumps(dict(key), default=str)),
                "size": path.stat().st_size,
                "sha256": sha256_of(path),
            }
            (staging / ENTRY_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            if entry.exists():
                shutil.rmtree(entry)
            staging.rename(entry)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
