"""Fetch released model weights into a local weights directory (HTTPS, resumable, verified).

`ensure_weights(weight_file, weights_dir)` returns the local path of a `WeightFile`:
- present: verify its sha256 (when pinned) and return it;
- absent: download to `<filename>.part` with a tqdm progress bar, resuming a partial `.part` with
  an HTTP `Range` request, verify, then atomically rename to `<filename>`.
Offline or unreachable hosts raise `WeightsUnavailableError` naming the URL and the exact path to
place the file by hand.
"""

import urllib.error
import urllib.request
from http.client import HTTPResponse
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm  # type: ignore[import-untyped]

from autolabel.models.errors import ChecksumMismatchError, WeightsUnavailableError
from autolabel.models.weight_files import WeightFile, sha256_of

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


def _unavailable(weight_file: WeightFile, dest: Path, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"weights {weight_file.filename} are not available ({why}); download {weight_file.url} "
        f"and place the file at {dest}"
    )


def _verify(path: Path, weight_file: WeightFile) -> None:
    if weight_file.sha256 is None:
        return
    got = sha256_of(path)
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
