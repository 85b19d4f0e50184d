"""Weight files: where a released checkpoint comes from and how it is verified.

`models/` never downloads; `autolabel.storage.weight_download` fetches a `WeightFile` into the
weights directory and this module only describes it and checks a local copy.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightFile:
    """One released weights file.

    Attributes:
        filename: Name of the file inside the weights directory.
        url: Where the official file is published.
        sha256: Pinned lowercase hex digest, or None where it is not yet verified.
    """

    filename: str
    url: str
    sha256: str | None = None


def sha256_of(path: Path) -> str:
    """Lowercase hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
