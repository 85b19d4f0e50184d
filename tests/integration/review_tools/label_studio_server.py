"""A real Label Studio server for the tests: 127.0.0.1, SQLite, a private HOME and data folder.

Label Studio 1.23.2 migrates a fresh SQLite database for ~60 s before it answers (measured here:
/health after 58-64 s on 2 cores). `deploy/review-tools/install.sh` does that once, into
`.venv-review/label-studio/template-data` (with the tests' user and API token); a server started
on a copy of it answers /health after 9-15 s.

This module is also a pytest plugin (tests/conftest.py loads it): in the process that runs the
session (the xdist controller, or the only process with `-n 0`), `pytest_sessionstart` starts
the server in the background as soon as the run begins, when the run covers this folder and
Label Studio is installed, and hands its URL to the test processes in environment variables
(set before xdist starts its workers, which inherit them); `pytest_sessionfinish` stops it. Its
start thus overlaps the other tests, and the first Label Studio test waits only for what is left
of it. Without that (a run started otherwise), the `label_studio` fixture starts its own server.
The server's whole process group is ended at the end, and it gets SIGTERM if the process that
started it dies first (PR_SET_PDEATHSIG): no server outlives the run.
"""

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.review_tools.tools import HERE, LABEL_STUDIO, stop_group

#: The tests' user and legacy API token; install.sh creates them in the template data folder.
USER = "review-tests@example.com"
PASSWORD = "review-tests-password"  # noqa: S105 - a throwaway local test user
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # noqa: S105 - same

#: How the session's server reaches the test processes.
URL_ENV = "REVIEW_TOOLS_LABEL_STUDIO_URL"
FILES_ENV = "REVIEW_TOOLS_LABEL_STUDIO_FILES"
LOG_ENV = "REVIEW_TOOLS_LABEL_STUDIO_LOG"
_SESSION_SERVER = pytest.StashKey["LabelStudioServer"]()
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LabelStudioServer:
    """`label-studio start` on 127.0.0.1:`port`, with everything it writes under `workdir`.

    `files_root` is its local-files document root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT):
    images to be served as `/data/local-files/?d=<path below it>` must lie under it.
    """

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.files_root = workdir / "files"
        self.log = workdir / "label-studio.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, workdir: Path) -> "LabelStudioServer":
        """Start a server (on a copy of the migrated template when there is one); returns at
        once, before it answers (see `wait_ready`)."""
        port = free_port()
        server = cls(workdir, f"http://127.0.0.1:{port}")
        data, home = workdir / "data", workdir / "home"
        template = LABEL_STUDIO.path / "template-data"
        if template.is_dir():
            shutil.copytree(template, data)
        for folder in (data, home, server.files_root):
            folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HOME": str(home),  # it writes ~/.local/share/label-studio and ~/.config
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server.files_root),
            # Their defaults report to, or ask, hosts outside this machine.
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
        }
        command = [str(LABEL_STUDIO.path / "bin" / "label-studio"), "start", "--no-browser"]
        command += ["--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
        command += ["--username", USER, "--password", PASSWORD, "--user-token", TOKEN]
        command += ["--enable-legacy-api-token"]
        with server.log.open("wb") as log:
            server._proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return server

    @classmethod
    def from_env(cls) -> "LabelStudioServer | None":
        """The session's server, started by the process that runs the session; None if none."""
        url = os.environ.get(URL_ENV)
        if not url:
            return None
        server = cls(Path(os.environ[FILES_ENV]).parent, url)
        server.log = Path(os.environ[LOG_ENV])
        return server

    def env(self) -> dict[str, str]:
        """The variables through which test processes find this server."""
        return {URL_ENV: self.url, FILES_ENV: str(self.files_root), LOG_ENV: str(self.log)}

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 240.0) -> float:
        """Wait until /health answers; returns the seconds waited. Fails the test, with the end
        of the server's log, when it exits or does not answer within `timeout_s`."""
        start = time.monotonic()
        while not self._healthy():
            exited = self._proc is not None and self._proc.poll() is not None
            if exited or time.monotonic() - start > timeout_s:
                what = "exited" if exited else f"did not answer within {timeout_s:.0f} s"
                tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                pytest.fail(f"Label Studio at {self.url} {what}:\n{tail}", pytrace=False)
            time.sleep(0.25)
        return time.monotonic() - start

    def stop(self) -> None:
        """End the server's process group (a server this process started)."""
        if self._proc is not None:
            stop_group(self._proc.pid)
            self._proc.wait()
            self._proc = None


def _covers_this_folder(config: pytest.Config) -> bool:
    for arg in config.args or [str(config.rootpath)]:
        path = Path(arg.split("::", 1)[0])
        path = (path if path.is_absolute() else config.invocation_params.dir / path).resolve()
        if path == HERE or path in HERE.parents or HERE in path.parents:
            return True
    return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the session's Label Studio in the background (see the module docstring)."""
    config = session.config
    if hasattr(config, "workerinput") or os.environ.get(URL_ENV) or config.option.collectonly:
        return
    if LABEL_STUDIO.missing() is not None or not _covers_this_folder(config):
        return
    workdir = Path(tempfile.mkdtemp(prefix="autolabel-label-studio-"))
    server = LabelStudioServer.start(workdir)
    config.stash[_SESSION_SERVER] = server
    os.environ.update(server.env())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the session's Label Studio and remove its folder."""
    server = session.config.stash.get(_SESSION_SERVER, None)
    if server is None:
        return
    try:
        server.stop()
    finally:
        for name in server.env():
            os.environ.pop(name, None)
        with contextlib.suppress(OSError):
            shutil.rmtree(server.workdir)
