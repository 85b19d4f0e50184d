"""The closed loop: labels -> SA-1B shards in S3 -> `autolabel.sa1b.landed` -> retraining starts.

The event part runs against a real `prefect server start` (PostgreSQL): `autolabel serve` serves
`retrain-sam` with its event trigger, `autolabel ingest-sa1b` uploads shards and emits the event,
and the server must start a retraining whose `data` parameter is the announced URL.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from autolabel.flows.label_dataset import autolabel_dataset
from autolabel.flows.sa1b import Sa1bExportRequest, export_sa1b_shards
from autolabel.storage.sa1b import read_shard
from tests.cli_runner import run_in_process
from tests.corpus import write_good_images
from tests.integration.flows.conftest import FlowEnv
from tests.integration.flows.test_label_flow import make_job
from tests.synthetic import write_synthetic_shards

pytestmark = pytest.mark.integration


def test_accepted_annotations_become_sa1b_shards(flow_env: FlowEnv, tmp_path: Path) -> None:
    write_good_images(tmp_path / "imgs", 5, np.random.default_rng(9), max_side=120)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    summary = autolabel_dataset(make_job(flow_env, "loop"))
    assert summary.annotations > 2
    engine = create_engine(flow_env.database_url)
    with engine.begin() as conn:  # a reviewer accepts the first two annotations
        conn.execute(
            text(
                "UPDATE annotations SET review_status = 'accepted' WHERE id IN "
                "(SELECT a.id FROM annotations a JOIN datasets d ON d.id = a.dataset_id "
                "WHERE d.name = 'loop' ORDER BY a.id LIMIT 2)"
            )
        )
    engine.dispose()
    output = f"s3://{flow_env.bucket}/sa1b/loop"
    everything = export_sa1b_shards(
        Sa1bExportRequest(dataset="loop", output=output + "-all", images_per_shard=2)
    )
    assert everything.annotations == summary.annotations
    assert len(everything.shards) == (everything.images + 1) // 2
    accepted = export_sa1b_shards(
        Sa1bExportRequest(dataset="loop", output=output, accepted_only=True)
    )
    assert accepted.annotations == 2
    local = tmp_path / "shard.tar"
    flow_env.s3().download_file(flow_env.bucket, "sa1b/loop/sa_000000.tar", str(local))
    samples = list(read_shard(local))
    assert sum(len(s.record.annotations) for s in samples) == 2
    assert all(s.image_bytes for s in samples)


_autolabel = run_in_process


def test_review_mark_chooses_what_export_sa1b_accepts(
    flow_env: FlowEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_good_images(tmp_path / "imgs", 4, np.random.default_rng(11), max_side=120)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    summary = autolabel_dataset(make_job(flow_env, "reviewed"))
    engine = create_engine(flow_env.database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.id, i.storage_key FROM annotations a JOIN images i ON i.id = a.image_id "
                "JOIN datasets d ON d.id = a.dataset_id WHERE d.name = 'reviewed' ORDER BY a.id"
            )
        ).all()
    engine.dispose()
    assert len(rows) == summary.annotations > 2
    first, last = rows[0][1], rows[-1][1]
    expected = {aid for aid, key in rows if key in (first, last)}
    assert len(expected) < len(rows)
    mark = ["review", "mark", "--dataset", "reviewed", "--status"]
    code, out, err = _autolabel([*mark, "accepted", "--image", first, "--image", last], capsys)
    assert code == 0, err
    assert f"marked {len(expected)} annotations" in out
    output = f"s3://{flow_env.bucket}/sa1b/reviewed"
    accepted = export_sa1b_shards(
        Sa1bExportRequest(dataset="reviewed", output=output, accepted_only=True)
    )
    assert accepted.annotations == len(expected)
    local = tmp_path / "shard.tar"
    flow_env.s3().download_file(flow_env.bucket, "sa1b/reviewed/sa_000000.tar", str(local))
    exported = {a.id for s in read_shard(local) for a in s.record.annotations}
    assert exported == expected
    bad = {
        ("--dataset", "nope", "--status", "accepted"): "dataset",
        ("--dataset", "reviewed", "--status", "maybe"): "status",
        ("--dataset", "reviewed", "--status", "accepted", "--category", "tree"): "category",
        ("--dataset", "reviewed", "--status", "accepted", "--image", "s3://b/x.jpg"): "image",
    }
    for args, word in bad.items():
        code, _, err = _autolabel(["review", "mark", *args], capsys)
        assert code == 2, err
        assert err.startswith("autolabel: error: ")
        assert word in err
        assert err.count("\n") == 1


@pytest.mark.timeout(600)
def test_announced_shards_start_a_retraining(
    flow_env: FlowEnv, prefect_server: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "AUTOLABEL_PREFECT_API": "server",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    holdout = f"s3://{flow_env.bucket}/sa1b/holdout"
    serve = [
        "serve",
        "--retrain-holdout",
        holdout,
        "--retrain-model",
        "efficientvit-sam-test",
        "--retrain-max-steps",
        "2",
    ]
    server = subprocess.Popen(
        [sys.executable, "-c", f"from autolabel.flows.cli import main; main({serve!r})"], env=env
    )
    try:
        deployment = _wait_for_deployment(prefect_server, "retrain-sam/retrain-sam", server)
        write_synthetic_shards(tmp_path / "new", shards=1, images_per_shard=3, seed=5)
        new_data = f"s3://{flow_env.bucket}/sa1b/new-batch"
        ingest = ["ingest-sa1b", str(tmp_path / "new"), "--to", new_data]
        subprocess.run(
            [sys.executable, "-c", f"from autolabel.flows.cli import main; main({ingest!r})"],
            env=env,
            check=True,
            timeout=120,
        )
        run = _wait_for_run(prefect_server, deployment)
        assert run["parameters"]["request"]["data"] == new_data
        assert run["parameters"]["request"]["holdout"] == holdout
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_deployment(api: str, name: str, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, "autolabel serve exited"
        response = httpx.get(f"{api}/deployments/name/{name}", timeout=5)
        if response.status_code == 200:
            return str(response.json()["id"])
        time.sleep(1)
    raise AssertionError(f"deployment {name} was not registered within 180 s")


def _wait_for_run(api: str, deployment_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    body = {"deployments": {"id": {"any_": [deployment_id]}}}
    while time.monotonic() < deadline:
        runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=5).json()
        if runs:
            return dict(runs[0])
        time.sleep(1)
    raise AssertionError("no flow run was triggered within 120 s of the event")


@pytest.mark.timeout(600)
def test_imported_review_becomes_training_data_and_is_announced(
    flow_env: FlowEnv, prefect_server: str, tmp_path: Path
) -> None:
    """A CVAT review (one prediction deleted, the rest kept) imported with --sa1b-output: the
    accepted labels are written as SA-1B shards and `autolabel.sa1b.landed` names them."""
    import json

    write_good_images(tmp_path / "imgs", 3, np.random.default_rng(21), max_side=120)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    summary = autolabel_dataset(make_job(flow_env, "looped"))
    assert summary.annotations > 2
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "AUTOLABEL_PREFECT_API": "server"}
    cli = [sys.executable, "-c", "from autolabel.flows.cli import main; main()"]
    export = ["export-review", "--dataset", "looped", "--format", "cvat"]
    subprocess.run([*cli, *export, "--output", str(tmp_path / "cvat")], env=env, check=True)
    doc = json.loads((tmp_path / "cvat/annotations/instances_default.json").read_text())
    dropped = doc["annotations"].pop(0)["attributes"]["autolabel_id"]
    kept = {a["attributes"]["autolabel_id"] for a in doc["annotations"]}
    (tmp_path / "review.json").write_text(json.dumps(doc))
    output = f"s3://{flow_env.bucket}/sa1b/reviews"
    review = ["import-review", "--dataset", "looped", "--format", "cvat"]
    done = subprocess.run(
        [*cli, *review, "--input", str(tmp_path / "review.json"), "--sa1b-output", output],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"{len(kept)} accepted, 0 corrected, 1 rejected, 0 added" in done.stdout
    listed = flow_env.s3().list_objects_v2(Bucket=flow_env.bucket, Prefix="sa1b/reviews/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert len(keys) == 1
    assert keys[0].startswith("sa1b/reviews/review-")
    flow_env.s3().download_file(flow_env.bucket, keys[0], str(tmp_path / "shard.tar"))
    exported = {a.id for s in read_shard(tmp_path / "shard.tar") for a in s.record.annotations}
    assert exported == kept
    assert dropped not in exported
    announced = keys[0].rsplit("/", 1)[0]
    body = {"filter": {"event": {"name": ["autolabel.sa1b.landed"]}}, "limit": 50}
    deadline = time.monotonic() + 60
    urls: list[str] = []
    while time.monotonic() < deadline and f"s3://{flow_env.bucket}/{announced}" not in urls:
        events = httpx.post(f"{prefect_server}/events/filter", json=body, timeout=10).json()
        urls = [e["payload"]["url"] for e in events.get("events", [])]
        time.sleep(1)
    assert f"s3://{flow_env.bucket}/{announced}" in urls
