"""Fetch released model weights into a local weights directory (HTTPS, resumable, verified).

`ensure_weights(weight_file, weights_dir)` returns the local path of a `WeightFile`:
- present: verify its sha256 (when pinned) and return it;
- absent: download to `<filename>.part` with a tqdm progress bar, resuming a partial `.part` with
  an HTTP `Range` request, verify, then atomically rename to `<filename>`.
Offline or unreachable hosts raise `WeightsUnavailableError` naming the URL and the exact path to
place the file by hand.

`prove_weights(weight_file, weights_dir, model_name=...)` does the same and proves the file
usable before any work starts: one sha256 of the file, recorded in the weights ledger
(`autolabel.storage.weight_ledger`); a pinned digest must match, and a file without one must load
into the model's architecture (`autolabel.models.registry.verify_layout`, keys and shapes only),
which the ledger remembers per digest, so each new digest is loaded once.
"""

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm  # type: ignore[import-untyped]

from autolabel.models.errors import ChecksumMismatchError, WeightsUnavailableError
from autolabel.models.weight_files import WeightFile, sha256_of
from autolabel.storage.weight_ledger import DigestRecord, Sighting, WeightLedger

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0

logger = logging.getLogger(__name__)


def _unavailable(weight_file: WeightFile, dest: Path, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"weights {weight_file.filename} are not available ({why}); download {weight_file.url} "
        f"and place the file at {dest}"
    )


def _verify(path: Path, weight_file: WeightFile, got: str | None = None) -> None:
    """Raise `ChecksumMismatchError` unless `path` (whose digest is `got`, computed when None)
    has the pinned digest; a release without one passes."""
    if weight_file.sha256 is None:
        return
    got = sha256_of(path) if got is None else got
    if got != weight_file.sha256.lower():
        raise ChecksumMismatchError(
            f"checksum mismatch for {path}: expected sha256 {weight_file.sha256.lower()}, "
            f"got {got}; delete the file and download {weight_file.url} again"
        )


def _open(url: str, offset: int) -> HTTPResponse:
    request = urllib.request.Request(url)  # noqa: S310 - scheme checked by the caller
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    response: HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310
    return response


def _download(url: str, part: Path, *, progress: bool) -> None:
    """Download `url` into `part`, resuming from its current size when the server allows."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:  # the partial file is already complete
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if resumed else "wb"
        with (
            part.open(mode) as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                handle.write(chunk)
                bar.update(len(chunk))


def ensure_weights(
    weight_file: WeightFile,
    weights_dir: Path,
    *,
    download: bool = True,
    progress: bool = True,
    allow_http: bool = False,
) -> Path:
    """Return the verified local path of `weight_file`, downloading it if needed.

    Args:
        weight_file: What to fetch (filename, URL, pinned sha256 or None).
        weights_dir: Directory holding weight files (created if missing).
        download: When False, a missing file raises instead of being downloaded.
        progress: Show a tqdm progress bar on stderr.
        allow_http: Accept a plain `http://` URL (local mirrors and tests); otherwise only HTTPS.

    Returns:
        `weights_dir / weight_file.filename`, present and verified.

    Raises:
        WeightsUnavailableError: missing and not downloadable (offline, unreachable, HTTP error,
            or `download=False`).
        ChecksumMismatchError: the file (present or downloaded) has the wrong sha256; a bad
            download is deleted.
    """
    dest = weights_dir / weight_file.filename
    if dest.is_file():
        _verify(dest, weight_file)
        return dest
    if not download:
        raise _unavailable(weight_file, dest, "download disabled")
    scheme = urlsplit(weight_file.url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise _unavailable(weight_file, dest, f"expected an https:// URL, got {weight_file.url!r}")
    weights_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _download(weight_file.url, part, progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise _unavailable(weight_file, dest, f"download failed: {exc}") from exc
    try:
        _verify(part, weight_file)
    except ChecksumMismatchError:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightProof:
    """Why a local weights file can be used.

    Attributes:
        path: The file.
        sha256: Its lowercase hex digest, computed once for this proof.
        tensors: Tensors whose keys and shapes matched the architecture, or None when the
            file was proven by its pinned digest instead.
        layout_cached: The layout was proven earlier for this digest and model (ledger).
        changed_from: The digest the ledger had for this file before, when it differs.
    """

    path: Path
    sha256: str
    tensors: int | None
    layout_cached: bool = False
    changed_from: DigestRecord | None = None


def prove_weights(
    weight_file: WeightFile,
    weights_dir: Path,
    *,
    model_name: str,
    download: bool = True,
    progress: bool = True,
    allow_http: bool = False,
) -> WeightProof:
    """Fetch `weight_file` like `ensure_weights`, then prove it usable by `model_name`.

    The file is hashed once and the digest recorded in `<weights_dir>/weights-ledger.json`
    (a digest that differs from the recorded one is logged as a warning and reported in
    `changed_from`). A pinned digest must match. Without one, the file must load into the
    architecture (`verify_layout`: safe load, keys and shapes against the model built on the
    meta device), unless the ledger records this digest as verified for `model_name`.

    Args:
        weight_file: The release (filename, URL, pinned sha256 or None).
        weights_dir: Directory holding weight files and the ledger.
        model_name: Registry name of the architecture the file is for.
        download, progress, allow_http: As for `ensure_weights`, when the file is absent.

    Raises:
        WeightsUnavailableError: missing and not downloadable.
        ChecksumMismatchError: the digest differs from the pinned one.
        CheckpointError, CheckpointMismatchError: an unpinned file does not load into the
            architecture (a one-line message naming the file and the first mismatched keys).
    """
    path = weights_dir / weight_file.filename
    if not path.is_file():  # a download verifies a pinned digest before the rename
        ensure_weights(
            weight_file, weights_dir, download=download, progress=progress, allow_http=allow_http
        )
    digest = sha256_of(path)
    ledger = WeightLedger(weights_dir)
    seen = ledger.record(path, sha256=digest)
    changed = seen.changed_from
    if changed is not None:
        logger.warning(
            "weights %s changed since %s: sha256 %s, was %s",
            path,
            changed.first_seen,
            digest,
            changed.sha256,
        )
    if weight_file.sha256 is not None:
        _verify(path, weight_file, digest)
        return WeightProof(path=path, sha256=digest, tensors=None, changed_from=changed)
    return _prove_layout(ledger, seen, path, model_name=model_name)


def _prove_layout(
    ledger: WeightLedger, seen: Sighting, path: Path, *, model_name: str
) -> WeightProof:
    """The layout proof of an unpinned file: from the ledger when its digest was proven for
    `model_name` before, else by `verify_layout` (then recorded)."""
    digest, changed = seen.entry.sha256, seen.changed_from
    cached = seen.entry.layout_verified.get(model_name)
    if cached is not None:
        return WeightProof(
            path=path, sha256=digest, tensors=cached, layout_cached=True, changed_from=changed
        )
    from autolabel.models.registry import verify_layout  # torch and the model families: on use

    tensors = verify_layout(model_name, path)
    ledger.record_layout(path.name, sha256=digest, model_name=model_name, tensors=tensors)
    return WeightProof(path=path, sha256=digest, tensors=tensors, changed_from=changed)
