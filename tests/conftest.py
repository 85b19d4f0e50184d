"""Shared fixtures: a fresh PostgreSQL database, a real S3 endpoint (moto server), Prefect.

The PostgreSQL server at 127.0.0.1:5432 (trust auth) and moto's HTTP server are real services;
nothing here mocks them. Set AUTOLABEL_TEST_PG_ADMIN_URL to use another server.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Two test workers share the machine's cores, and many tests start processes of their own (the
# CLI, workers, servers, torchrun): one compute thread per process (OpenMP, MKL, OpenBLAS; torch
# reads these when it first runs) keeps them from oversubscribing the cores and spinning against
# each other. Set before anything imports torch; processes the tests start inherit it.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# Starts the real Label Studio server of tests/integration/review_tools/ with the session, in the
# process that runs it (the xdist controller), so that its start overlaps the other tests.
pytest_plugins = ["tests.integration.review_tools.label_studio_server"]

PG_ADMIN_URL = os.environ.get(
    "AUTOLABEL_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def pytest_configure(config: pytest.Config) -> None:
    """Give Ctrl-C (SIGINT) back to a test run started in the background by a non-interactive
    shell (`pytest &`, as CI scripts and job runners do): such a shell starts it with SIGINT
    ignored, every command a test starts would inherit that, and the tests that stop a worker
    or `autolabel serve` with Ctrl-C would wait for it in vain."""
    del config
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests when CUDA is not available."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _sigchld_restored() -> Iterator[None]:
    """Give SIGCHLD back its default after each test. Iterating a torch DataLoader with worker
    processes installs a Python SIGCHLD handler for the rest of the process; in a test worker
    that later starts and reaps many subprocesses (the CLI, servers), a child's exit then ran
    that handler, and such deliveries were seen to kill the test worker with SIGSEGV."""
    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)
        from torch.utils.data._utils import signal_handling

        signal_handling._SIGCHLD_handler_set = False  # the next loader installs its own again


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Give torch back its intra-op thread count after each test: a test that changed it would
    leave later tests of its worker computing with another count than the processes they start,
    and trainings compared across the two (resume against an uninterrupted run) would differ in
    the last bits."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresDatabases:
    """Creates fresh databases on the PostgreSQL server and drops them all at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        """A new empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        import psycopg

        name = f"autolabel_test_{uuid.uuid4().hex[:12]}"
        try:
            admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
        with admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            for name in self.names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Factory of fresh databases for tests that need one to themselves."""
    databases = PostgresDatabases()
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """SQLAlchemy URL of a fresh database shared by the session's storage tests."""
    return postgres_databases.create()


class MotoServer:
    """A moto S3 server in a subprocess, listening on 127.0.0.1:`port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self._proc.poll() is not None:
                    raise RuntimeError("moto server exited during start-up") from None
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not listen on port {self.port} within 30 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A real S3 HTTP endpoint for the whole session."""
    server = MotoServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the moto server with dummy credentials; returns the endpoint URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AUTOLABEL_S3__ENDPOINT_URL", moto_server.endpoint_url)
    return moto_server.endpoint_url


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A new, empty bucket on the moto server; returns its name."""
    import boto3

    name = f"bucket-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session", autouse=True)
def runtime_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One runtime cache (exported graphs, runtime choices) for the whole run, shared by the
    xdist workers, as a worker's cache persists across its jobs: runtime selection runs once per
    model, not once per test home. Tests of the selection itself use caches of their own."""
    folder = tmp_path_factory.getbasetemp().parent / "runtime-cache"
    folder.mkdir(parents=True, exist_ok=True)
    patch = pytest.MonkeyPatch()
    patch.setenv("AUTOLABEL_MODELS__RUNTIME_CACHE_DIR", str(folder))
    try:
        yield folder
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An isolated PREFECT_HOME with telemetry off, set for the whole session."""
    home = tmp_path_factory.mktemp("prefect-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(home))
    patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    patch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    patch.delenv("PREFECT_API_URL", raising=False)
    try:
        yield home
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def prefect_harness(prefect_home: Path) -> Iterator[None]:
    """A throwaway Prefect API (prefect_test_harness) shared by the session's flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on a fresh PostgreSQL database; yields its API URL.

    Unlike the ephemeral test API, it runs Prefect's background services (such as the
    repossessor that revokes the expired concurrency leases of killed workers).
    """
    import httpx
    import psycopg

    name = f"autolabel_prefect_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-server-home")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"{base}/{name}",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prefect server did not become healthy within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
