"""deploy/prefect.yaml names real flows, valid parameters and schedules, and telemetry off."""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[3]
DEPLOYMENTS: list[dict[str, Any]] = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())[
    "deployments"
]


@pytest.fixture(autouse=True)
def restore_sys_path() -> Iterator[None]:
    """Prefect's file loader puts the flow's folder on sys.path; later tests must not see it."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_is_loadable_and_valid(
    deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert flow.name in {
        "autolabel-dataset",
        "autolabel-shard",
        "export-coco",
        "export-sa1b",
        "retrain-sam",
        "import-review",
        "sample-for-review",
        "quality-report",
        "tune-thresholds",
        "compare-prompts",
    }
    if deployment.get("parameters"):
        flow.validate_parameters(deployment["parameters"])
    env = deployment["work_pool"]["job_variables"]["env"]
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))


def test_both_pools_are_used() -> None:
    pools = {d["work_pool"]["name"] for d in DEPLOYMENTS}
    assert pools == {"autolabel-gpu", "autolabel-cpu"}


def test_bad_parameters_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.exceptions import ParameterTypeError

    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint("flows/label_dataset.py:autolabel_dataset")
    with pytest.raises(ParameterTypeError, match="shard_size"):
        flow.validate_parameters(
            {"job": {"source": "s3://b/", "dataset": "d", "prompts": ["a"], "shard_size": 0}}
        )


def test_retraining_never_overlaps_and_listens_for_new_data() -> None:
    (retrain,) = [d for d in DEPLOYMENTS if d["entrypoint"].endswith(":retrain_sam")]
    assert retrain["concurrency_limit"] == 1
    (trigger,) = retrain["triggers"]
    assert trigger["expect"] == ["autolabel.sa1b.landed"]
    assert trigger["parameters"]["request"]["data"] == "{{ event.payload.url }}"
    assert retrain["schedules"]
