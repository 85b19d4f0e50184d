"""The fault suite's world: one bucket of images on the moto server, one PostgreSQL database,
and a reference labeling of those images by an uninterrupted run, shared by every fault test.

Each test labels the same images into its own dataset through the real command line (the
console script in a subprocess, talking to the session's Prefect test API as to a configured
server, or, where the test is about it, starting its own temporary Prefect API), breaks
something on the way (kill -9, an S3 outage, terminated database backends, a second job), and
checks the invariants (`FaultWorld.check_invariants`): no duplicate, no lost image, every run
in a final state, no orphan process, no traceback on the terminal.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import MotoServer, PostgresDatabases
from tests.corpus import write_good_images

N_IMAGES = 16
AUTOLABEL = Path(sys.executable).parent / "autolabel"
REFERENCE = "reference"


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, grandchildren...), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return f"{pid} (gone)"


def alive(pids: set[int]) -> set[int]:
    """The pids of `pids` that still run (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    """Wait for `pids` to exit; returns the ones still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pids)


@dataclass
class Command:
    """An `autolabel` command running in its own process (and process group)."""

    process: subprocess.Popen[str]
    out: Path
    err: Path

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def wait(self, timeout: float = 600) -> int:
        return self.process.wait(timeout=timeout)

    def interrupt(self, timeout: float = 60) -> str | None:
        """Ctrl-C (SIGINT), then wait for the command to exit. None when it did; else it is
        killed with everything it started, and the return says what was still running."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            below = descendants(self.process.pid)
            running = [_command_line(pid) for pid in sorted(below | {self.process.pid})]
            os.killpg(self.process.pid, signal.SIGKILL)
            for pid in below:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            return (
                f"still running {timeout:g} s after SIGINT: {running}; "
                f"its stderr ends: {self.stderr[-2000:]}"
            )
        return None

    def kill_hard(self) -> set[int]:
        """SIGKILL the command's process alone (as the OOM killer would); returns the
        processes it had started, which must then go away by themselves."""
        below = descendants(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        return below


@dataclass
class FaultWorld:
    """Where the fault tests' data lives, and how to run and check the command line."""

    env: dict[str, str]
    database_url: str
    bucket: str
    endpoint_url: str
    folder: Path
    api_url: str
    reference: list[tuple[object, ...]] = field(default_factory=list)

    def source(self) -> str:
        return f"s3://{self.bucket}/images"

    def label_argv(self, dataset: str, *extra: str) -> list[str]:
        return [
            "label", "--source", self.source(), "--dataset", dataset,
            "--prompts", "box . disc", "--detector", "grounding-dino-test",
            "--segmenter", "efficientvit-sam-test", "--random-weights",
            "--box-threshold", "0", "--text-threshold", "0", "--max-detections", "3",
            "--shard-size", "8", "--batch-size", "2",
            # Faults are timed against the torch runtimes' pace (the tiny models run several
            # times faster in OpenVINO, and a run could end before its outage); runtime
            # selection has tests of its own.
            "--segmenter-backend", "torch", "--detector-backend", "torch", *extra,
        ]  # fmt: skip

    def start(self, argv: list[str], *, temporary_api: bool = False, **env: str) -> Command:
        """Start `autolabel ARGV` with the world's environment plus `env`. Its flows talk to
        the session's Prefect test API, or with `temporary_api` to the temporary API the
        command starts itself (the embedded default)."""
        api = {} if temporary_api else {"PREFECT_API_URL": self.api_url}
        name = uuid.uuid4().hex[:8]
        out, err = self.folder / f"{name}.out", self.folder / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                [str(AUTOLABEL), *argv],
                env=self.env | api | env,
                stdout=stdout,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        return Command(process, out, err)

    def run(
        self, argv: list[str], timeout: float = 600, *, temporary_api: bool = False, **env: str
    ) -> Command:
        command = self.start(argv, temporary_api=temporary_api, **env)
        command.wait(timeout)
        return command

    def rows(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def done(self, dataset: str) -> int:
        rows = self.rows(
            "SELECT count(*) FROM image_results r JOIN images i ON i.id = r.image_id "
            "JOIN datasets d ON d.id = i.dataset_id WHERE d.name = :n AND r.status = 'done'",
            n=dataset,
        )
        return int(rows[0][0])  # type: ignore[call-overload]

    def wait_done(self, dataset: str, at_least: int, command: Command, timeout: float = 240) -> int:
        """Wait until `at_least` images of `dataset` are done (the command still running)."""
        deadline = time.monotonic() + timeout
        while (count := self.done(dataset)) < at_least:
            assert command.process.poll() is None, f"ended early: {command.stderr[-2000:]}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
        return count

    def annotations(self, dataset: str) -> list[tuple[object, ...]]:
        """(image key, instance index, category, RLE) of a dataset, ordered."""
        return self.rows(
            "SELECT i.storage_key, a.instance_index, c.name, a.seg_counts FROM annotations a "
            "JOIN images i ON i.id = a.image_id JOIN categories c ON c.id = a.category_id "
            "JOIN datasets d ON d.id = a.dataset_id WHERE d.name = :n "
            "ORDER BY i.storage_key, a.instance_index",
            n=dataset,
        )

    def runs(self, dataset: str) -> list[tuple[int, str, str | None, int]]:
        """(id, status, reason, images done) of the dataset's runs, oldest first."""
        rows = self.rows(
            "SELECT r.id, r.status, r.status_reason, r.images_done FROM label_runs r "
            "JOIN datasets d ON d.id = r.dataset_id WHERE d.name = :n ORDER BY r.id",
            n=dataset,
        )
        return [(int(i), str(s), None if r is None else str(r), int(d)) for i, s, r, d in rows]  # type: ignore[call-overload]

    def check_invariants(self, dataset: str, commands: list[Command]) -> None:
        """No duplicate, no lost image, every run final, no traceback on any terminal."""
        images = self.rows(
            "SELECT i.storage_key, count(*) FROM images i JOIN datasets d ON d.id = i.dataset_id "
            "WHERE d.name = :n GROUP BY i.storage_key",
            n=dataset,
        )
        assert len(images) == N_IMAGES, "an image is missing from the dataset"
        assert {n for _, n in images} == {1}, "an image is registered twice"
        done_twice = self.rows(
            "SELECT r.image_id FROM image_results r JOIN images i ON i.id = r.image_id "
            "JOIN datasets d ON d.id = i.dataset_id WHERE d.name = :n AND r.status = 'done' "
            "GROUP BY r.image_id, r.work_key HAVING count(*) > 1",
            n=dataset,
        )
        assert done_twice == []
        assert self.done(dataset) == N_IMAGES, "an image was lost"
        assert self.annotations(dataset) == self.reference
        runs = self.runs(dataset)
        assert "running" not in [status for _, status, _, _ in runs], runs
        assert sum(done for _, _, _, done in runs) == N_IMAGES, "run counts != the work done"
        for command in commands:
            assert "Traceback" not in command.stderr + command.stdout


@pytest.fixture(scope="session")
def fault_world(
    moto_server: MotoServer,
    postgres_databases: PostgresDatabases,
    prefect_harness: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> FaultWorld:
    """Images in a bucket, a database, and the reference labeling (one clean CLI run)."""
    folder = tmp_path_factory.mktemp("faults")
    write_good_images(folder / "images", N_IMAGES, np.random.default_rng(6), max_side=140)
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any key
    )
    s3.create_bucket(Bucket=bucket)
    for path in sorted((folder / "images").iterdir()):
        s3.upload_file(str(path), bucket, f"images/{path.name}")
    database_url = postgres_databases.create()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_API"))}
    env.update(
        AUTOLABEL_HOME=str(folder / "home"),
        AUTOLABEL_DATABASE__URL=database_url,
        AUTOLABEL_MODELS__DEVICE="cpu",
        AUTOLABEL_MODELS__RUNTIME_CACHE_DIR=os.environ["AUTOLABEL_MODELS__RUNTIME_CACHE_DIR"],
        AUTOLABEL_S3__ENDPOINT_URL=moto_server.endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1",
        PREFECT_HOME=str(folder / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
    )
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value())
    world = FaultWorld(env, database_url, bucket, moto_server.endpoint_url, folder, api_url)
    clean = world.run(world.label_argv(REFERENCE))
    assert clean.process.returncode == 0, clean.stderr[-3000:]
    world.reference = world.annotations(REFERENCE)
    assert len(world.reference) > N_IMAGES  # thresholds 0: every image gets masks
    return world
