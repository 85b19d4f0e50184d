"""Two jobs at once. On one dataset: the second is refused in one line and recorded, the first
labels everything. Sharing one fresh PREFECT_HOME: the commands' temporary Prefect APIs migrate
its database in turn, and both jobs run."""

import time

import pytest
from sqlalchemy import create_engine, text

from tests.integration.faults.conftest import N_IMAGES, FaultWorld

pytestmark = pytest.mark.integration


def test_a_second_job_beside_a_running_one_is_refused(fault_world: FaultWorld) -> None:
    dataset = "two-jobs"
    argv = fault_world.label_argv(dataset)
    # Whichever job claims the dataset is held at its first write of results (reads go on, its
    # heartbeat too) until the other has been refused: the jobs overlap however slowly each
    # starts on a loaded machine.
    engine = create_engine(fault_world.database_url)
    with engine.connect() as conn, conn.begin():
        conn.execute(text("LOCK TABLE image_results IN EXCLUSIVE MODE"))
        one, two = fault_world.start(argv), fault_world.start(argv)
        deadline = time.monotonic() + 300
        while one.process.poll() is None and two.process.poll() is None:
            assert time.monotonic() < deadline, "neither job ended while one was held"
            time.sleep(0.2)
    engine.dispose()
    codes = sorted([one.wait(), two.wait()])
    assert codes == [0, 2], one.stderr[-2000:] + two.stderr[-2000:]
    refused = one if one.process.returncode == 2 else two
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("autolabel: error: run ")
    assert "refused: dataset is being labeled by run" in lines[0]
    runs = fault_world.runs(dataset)
    assert sorted((status, done) for _, status, _, done in runs) == [
        ("completed", N_IMAGES),
        ("failed", 0),
    ]
    failed = next(reason for _, status, reason, _ in runs if status == "failed")
    assert str(failed).startswith("refused: ")
    fault_world.check_invariants(dataset, [one, two])


def test_commands_sharing_a_fresh_prefect_home_start_in_turn(fault_world: FaultWorld) -> None:
    home = str(fault_world.folder / "shared-fresh-home")
    jobs = {
        name: fault_world.start(fault_world.label_argv(name), temporary_api=True, PREFECT_HOME=home)
        for name in ("shared-home-a", "shared-home-b")
    }
    for name, job in jobs.items():
        assert job.wait() == 0, job.stderr[-3000:]
        fault_world.check_invariants(name, [job])
