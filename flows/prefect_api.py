"""The Prefect API a command's flows talk to: the configured server, or a temporary one that
lives exactly as long as the command.

Prefect's own ephemeral server is a child process that outlives a parent killed with SIGKILL,
and two processes starting it on one PREFECT_HOME race in its database migration. The
temporary server started here differs in two ways:
- the kernel stops it when its parent dies, however the parent dies (Linux `PR_SET_PDEATHSIG`);
- its start (the migration) holds a lock on PREFECT_HOME, so concurrent commands take turns.
"""

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from autolabel.flows.errors import FlowError
from autolabel.flows.settings import Settings

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1


class PrefectApiError(FlowError):
    """The temporary Prefect API server could not be started."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with(parent: int) -> Callable[[], None]:
    """A `preexec_fn` that asks the kernel to send SIGTERM to the child when `parent` dies."""

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arrange


def _server_command(port: int) -> list[str]:
    import prefect

    options = {
        "--app-dir": str(Path(prefect.__file__).parent.parent),
        "--factory": "prefect.server.api.server:create_app",
        "--host": "127.0.0.1",
        "--port": str(port),
        "--log-level": "error",
        "--lifespan": "on",
    }
    return [sys.executable, "-m", "uvicorn", *(part for pair in options.items() for part in pair)]


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PrefectApiError(
                    f"the temporary Prefect API exited with code {process.returncode} while "
                    f"starting; its output is in {log}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.2)
    raise PrefectApiError(
        f"the temporary Prefect API did not answer within {START_TIMEOUT_S:g} s; see {log}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class StartingApi:
    """A temporary API server process that is starting: `ready()` waits for it.

    It holds PREFECT_HOME's start lock from its launch until it answers (its migration)."""

    def __init__(self, prefect_home: Path, log: Path) -> None:
        self.home, self.log, port = prefect_home, log, _free_port()
        self.url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        prefect_home.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._lock = (prefect_home / "autolabel-api-start.lock").open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        with log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                _server_command(port),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with(os.getpid()),
            )

    def ready(self) -> str:
        """Wait until the server answers (then release the start lock); returns its URL."""
        try:
            _wait_healthy(self.process, self.url, self.log)
        except BaseException:
            self.stop()
            raise
        finally:
            self._unlock()
        logger.info("temporary Prefect API at %s (pid %d)", self.url, self.process.pid)
        return self.url

    def _unlock(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def stop(self) -> None:
        self._unlock()
        _stop(self.process)


_early: StartingApi | None = None
FLOW_COMMANDS = frozenset({"label", "export", "demo", "ingest-sa1b", "export-sa1b", "serve"})


def start_early(argv: list[str], log: Path) -> None:
    """Launch the temporary API before the command's modules are imported, when the command
    line names a command that runs flows on the ephemeral default: its start then overlaps the
    imports. `temporary_api` takes it over; `discard_early` stops it if nothing did."""
    global _early
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command not in FLOW_COMMANDS or {"--help", "--dry-run"} & set(argv):
        return
    if (
        os.environ.get("PREFECT_API_URL")
        or os.environ.get("AUTOLABEL_PREFECT_API", "ephemeral") != "ephemeral"
    ):
        return
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    with contextlib.suppress(OSError):
        _early = StartingApi(home, log)


def discard_early() -> None:
    """Stop an early-started API that no command took over."""
    global _early
    if _early is not None:
        _early.stop()
        _early = None


def _take_early(prefect_home: Path) -> StartingApi | None:
    global _early
    early, _early = _early, None
    if early is not None and early.home.resolve() != prefect_home.resolve():
        early.stop()
        return None
    return early


@contextlib.contextmanager
def temporary_api(prefect_home: Path, log: Path) -> Iterator[str]:
    """Run a private Prefect API server for the block and point this process's Prefect client
    at it; yields its URL. The server keeps its history in PREFECT_HOME's database (as Prefect's
    own ephemeral server does) and writes its output to `log`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    starting = _take_early(prefect_home) or StartingApi(prefect_home, log)
    url = starting.ready()
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_clients()
    finally:
        starting.stop()


def _drain_clients() -> None:
    """Send the logs and events still queued in this process before their server goes."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=10)
        except (RuntimeError, OSError) as exc:  # a worker that never started, or a lost server
            logger.debug("could not drain %s: %s", worker.__name__, exc)


def prefect_home() -> Path:
    """PREFECT_HOME as Prefect resolves it (default ~/.prefect)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


@contextlib.contextmanager
def flow_api(settings: Settings, log: Path) -> Iterator[str | None]:
    """The Prefect API for a command's flows: a temporary one (see `temporary_api`) when the
    settings ask for the ephemeral API and no Prefect API URL is set (in the environment or by
    an enclosing `flow_api`); else the configured one (yields None: Prefect's client reads its
    URL itself)."""
    from prefect.settings import PREFECT_API_URL

    if settings.prefect_api == "ephemeral" and not PREFECT_API_URL.value():
        with temporary_api(prefect_home(), log) as url:
            yield url
    else:
        yield None
