"""kill -9 of `autolabel label` mid-shard: its temporary Prefect API dies with it, its run is
recorded `crashed`, and a rerun labels exactly the rest."""

import pytest

from tests.integration.faults.conftest import N_IMAGES, FaultWorld, wait_gone

pytestmark = pytest.mark.integration


def test_cli_killed_mid_shard_leaves_no_orphan_and_a_crashed_run(fault_world: FaultWorld) -> None:
    dataset = "kill-cli"
    first = fault_world.start(fault_world.label_argv(dataset), temporary_api=True)
    interrupted_at = fault_world.wait_done(dataset, 5, first)
    started = first.kill_hard()
    assert started, "the command had started its temporary Prefect API"
    assert wait_gone(started) == set(), "processes outlived the killed command"
    assert interrupted_at < N_IMAGES
    [(run_id, status, _, _)] = fault_world.runs(dataset)
    assert status == "running"  # nobody has looked yet: the database cannot know by itself

    rerun = fault_world.run(fault_world.label_argv(dataset), temporary_api=True)
    assert rerun.process.returncode == 0, rerun.stderr[-3000:]
    runs = fault_world.runs(dataset)
    assert runs[0][:2] == (run_id, "crashed")
    assert "is gone" in str(runs[0][2])
    assert runs[0][3] >= interrupted_at  # the crashed run's count is the work it did
    assert runs[1][1] == "completed"
    assert runs[1][3] == N_IMAGES - runs[0][3]
    fault_world.check_invariants(dataset, [first, rerun])
