"""ensure_weights against a real local HTTP server that honours Range requests."""

import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autolabel.models.errors import ChecksumMismatchError, WeightsUnavailableError
from autolabel.models.weight_files import WeightFile
from autolabel.storage.weight_download import ensure_weights
from tests.conftest import free_port

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Server:
    base_url: str
    ranges: list[str | None] = field(default_factory=list)


def make_handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/w.pt":
                self.send_error(404)
                return
            header = self.headers.get("Range")
            server.ranges.append(header)
            match = re.fullmatch(r"bytes=(\d+)-", header or "")
            start = int(match.group(1)) if match else 0
            if start >= len(PAYLOAD):
                self.send_error(416)
                return
            body = PAYLOAD[start:]
            self.send_response(206 if match else 200)
            if match:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
                )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base_url="")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def weight_file(server: Server, sha256: str | None = DIGEST) -> WeightFile:
    return WeightFile(filename="w.pt", url=f"{server.base_url}/w.pt", sha256=sha256)


def test_download_verifies_and_renames(server: Server, tmp_path: Path) -> None:
    path = ensure_weights(
        weight_file(server), tmp_path / "weights", progress=False, allow_http=True
    )
    assert path == tmp_path / "weights" / "w.pt"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "weights" / "w.pt.part").exists()
    assert server.ranges == [None]
    # Present and valid: no second request.
    ensure_weights(weight_file(server), tmp_path / "weights", progress=False, allow_http=True)
    assert server.ranges == [None]


def test_partial_download_resumes_with_range(server: Server, tmp_path: Path) -> None:
    (tmp_path / "w.pt.part").write_bytes(PAYLOAD[:1000])
    path = ensure_weights(weight_file(server), tmp_path, progress=False, allow_http=True)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-"]


def test_complete_part_file_is_finished_without_download(server: Server, tmp_path: Path) -> None:
    (tmp_path / "w.pt.part").write_bytes(PAYLOAD)
    path = ensure_weights(weight_file(server), tmp_path, progress=False, allow_http=True)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_checksum_failure_deletes_the_download(server: Server, tmp_path: Path) -> None:
    wrong = "f" * 64
    with pytest.raises(ChecksumMismatchError) as info:
        ensure_weights(weight_file(server, wrong), tmp_path, progress=False, allow_http=True)
    assert wrong in str(info.value)
    assert DIGEST in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_present_file_with_wrong_checksum_is_rejected(server: Server, tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatchError, match=DIGEST):
        ensure_weights(weight_file(server), tmp_path, progress=False, allow_http=True)
    assert server.ranges == []


def test_unpinned_weights_are_accepted(server: Server, tmp_path: Path) -> None:
    path = ensure_weights(weight_file(server, None), tmp_path, progress=False, allow_http=True)
    assert path.read_bytes() == PAYLOAD


def test_unreachable_host_names_url_and_destination(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/w.pt"  # nothing listens there
    missing = WeightFile(filename="w.pt", url=url, sha256=DIGEST)
    with pytest.raises(WeightsUnavailableError) as info:
        ensure_weights(missing, tmp_path, progress=False, allow_http=True)
    message = str(info.value)
    assert url in message
    assert str(tmp_path / "w.pt") in message


def test_http_error_and_disabled_download_and_plain_http(server: Server, tmp_path: Path) -> None:
    absent = WeightFile(filename="x.pt", url=f"{server.base_url}/x.pt", sha256=None)
    with pytest.raises(WeightsUnavailableError, match="404"):
        ensure_weights(absent, tmp_path, progress=False, allow_http=True)
    with pytest.raises(WeightsUnavailableError, match="download disabled"):
        ensure_weights(weight_file(server), tmp_path, download=False)
    with pytest.raises(WeightsUnavailableError, match="https://"):
        ensure_weights(weight_file(server), tmp_path, progress=False)
    assert server.ranges == []
