"""Two identical jobs started together on one dataset: one labels, the other is refused in one
line and recorded; both commands share one PREFECT_HOME, whose database they start in turn."""

import pytest

from tests.integration.faults.conftest import N_IMAGES, FaultWorld

pytestmark = pytest.mark.integration


def test_a_second_job_beside_a_running_one_is_refused(fault_world: FaultWorld) -> None:
    dataset = "two-jobs"
    home = str(fault_world.folder / "shared-prefect-home")  # fresh: both run its migration
    one = fault_world.start(fault_world.label_argv(dataset), PREFECT_HOME=home)
    two = fault_world.start(fault_world.label_argv(dataset), PREFECT_HOME=home)
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
