"""Services failing under a running job: the S3 endpoint goes away and comes back, PostgreSQL
backends are terminated, the S3 endpoint goes away for good."""

import time

import psycopg
import pytest

from tests.integration.faults.conftest import N_IMAGES, FaultWorld
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


SMALL_SHARDS = ("--shard-size", "2")  # later shards fetch their images after the outage began


def moto_proxy(world: FaultWorld) -> TcpProxy:
    host, port = world.endpoint_url.removeprefix("http://").split(":")
    return TcpProxy((host, int(port)))


def test_s3_endpoint_stopped_and_restarted_mid_run(fault_world: FaultWorld) -> None:
    """The endpoint refuses connections for 4 s mid-run: retries carry the job through."""
    dataset, proxy = "s3-restart", moto_proxy(fault_world)
    try:
        job = fault_world.start(
            fault_world.label_argv(dataset, *SMALL_SHARDS), AUTOLABEL_S3__ENDPOINT_URL=proxy.url
        )
        fault_world.wait_done(dataset, 3, job)
        proxy.down()
        time.sleep(4)
        proxy.up()
        assert job.wait() == 0, job.stderr[-3000:]
    finally:
        proxy.close()
    assert proxy.refused > 0, "the job did not meet the outage"
    [(_, status, _, done)] = fault_world.runs(dataset)
    assert (status, done) == ("completed", N_IMAGES)
    fault_world.check_invariants(dataset, [job])


def test_postgres_backends_terminated_mid_run(fault_world: FaultWorld) -> None:
    dataset = "pg-terminated"
    job = fault_world.start(fault_world.label_argv(dataset))
    fault_world.wait_done(dataset, 5, job)
    name = fault_world.database_url.rsplit("/", 1)[1]
    admin = fault_world.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    terminated = 0
    for _ in range(2):
        with psycopg.connect(admin, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        terminated += len(rows)
        time.sleep(1.5)
    assert terminated >= 1
    assert job.wait() == 0, job.stderr[-3000:]
    [(_, status, _, done)] = fault_world.runs(dataset)
    assert (status, done) == ("completed", N_IMAGES)
    fault_world.check_invariants(dataset, [job])


def test_s3_gone_for_good_fails_the_run_in_one_line(fault_world: FaultWorld) -> None:
    dataset, proxy = "s3-gone", moto_proxy(fault_world)
    try:
        job = fault_world.start(
            fault_world.label_argv(dataset, *SMALL_SHARDS),
            AUTOLABEL_S3__ENDPOINT_URL=proxy.url,
            AUTOLABEL_S3__MAX_ATTEMPTS="2",
            AUTOLABEL_S3__CONNECT_TIMEOUT_S="1",
            AUTOLABEL_LABELING__SHARD_RETRY_DELAYS_S="[1, 1]",  # the default waits 5 s, 30 s
        )
        fault_world.wait_done(dataset, 3, job)
        proxy.down()
        assert job.wait() == 2, job.stderr[-3000:]
    finally:
        proxy.close()
    errors = [line for line in job.stderr.splitlines() if line.startswith("autolabel:")]
    assert len(errors) == 1, job.stderr
    assert errors[0].startswith("autolabel: error: ")
    assert "after retries" in errors[0]
    assert job.stderr.rstrip().endswith(errors[0])  # the last thing printed
    assert "Traceback" not in job.stderr + job.stdout
    [(_, status, reason, done)] = fault_world.runs(dataset)
    assert status == "failed"
    assert "TransientStorageError" in str(reason)
    assert 3 <= done < N_IMAGES
