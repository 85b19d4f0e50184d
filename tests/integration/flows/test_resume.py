"""Crashes mid-run lose nothing and duplicate nothing: a rerun completes exactly what is missing.

Each test labels the same images twice: once interrupted then resumed (dataset A), once in one
clean run (dataset B). Seeded random weights make both runs produce the same masks, so the two
datasets must end up with identical annotations.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autolabel.flows.label_dataset import autolabel_dataset
from autolabel.tasks.labeling import shard
from tests.corpus import write_good_images
from tests.integration.flows.conftest import FlowEnv
from tests.integration.flows.test_label_flow import db_rows, make_job

pytestmark = pytest.mark.integration


def annotations_by_key(env: FlowEnv, dataset: str) -> list[tuple[object, ...]]:
    """(image key, instance index, category, RLE) of a dataset, ordered."""
    return db_rows(
        env,
        "SELECT i.storage_key, a.instance_index, c.name, a.seg_counts FROM annotations a "
        "JOIN images i ON i.id = a.image_id JOIN categories c ON c.id = a.category_id "
        "JOIN datasets d ON d.id = a.dataset_id WHERE d.name = :name "
        "ORDER BY i.storage_key, a.instance_index",
        name=dataset,
    )


def done_count(env: FlowEnv, dataset: str) -> int:
    rows = db_rows(
        env,
        "SELECT count(*) FROM image_results r JOIN images i ON i.id = r.image_id "
        "JOIN datasets d ON d.id = i.dataset_id WHERE d.name = :name AND r.status = 'done'",
        name=dataset,
    )
    return int(rows[0][0])  # type: ignore[call-overload]


def test_shard_failing_after_a_partial_write_resumes_exactly(
    flow_env: FlowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_good_images(tmp_path / "imgs", 12, np.random.default_rng(5), max_side=140)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    real_write = shard.write_image_batch
    calls = {"n": 0}

    def write_then_crash(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        stats = real_write(*args, **kwargs)  # type: ignore[arg-type]
        if calls["n"] == 2:  # the second batch's rows are in the transaction, then it dies
            raise RuntimeError("worker lost mid-batch")
        return stats

    monkeypatch.setattr(shard, "write_image_batch", write_then_crash)
    with pytest.raises(RuntimeError, match="worker lost mid-batch"):
        autolabel_dataset(make_job(flow_env, "crash-a", shard_size=12, batch_size=4))
    assert done_count(flow_env, "crash-a") == 4  # only the first batch committed
    monkeypatch.setattr(shard, "write_image_batch", real_write)

    resumed = autolabel_dataset(make_job(flow_env, "crash-a", shard_size=12, batch_size=4))
    assert (resumed.images_done, resumed.images_skipped) == (8, 4)
    clean = autolabel_dataset(make_job(flow_env, "crash-b", shard_size=12, batch_size=4))
    assert clean.images_done == 12
    resumed_rows = annotations_by_key(flow_env, "crash-a")
    assert resumed_rows == annotations_by_key(flow_env, "crash-b")
    assert len(resumed_rows) > 0


@pytest.mark.timeout(900)
def test_killed_worker_process_resumes_exactly(
    flow_env: FlowEnv, prefect_server: str, tmp_path: Path
) -> None:
    """Workers talk to a real Prefect server: the killed worker's device slot is leased, and
    the server revokes the lease, so the rerun can take the slot."""
    write_good_images(tmp_path / "imgs", 24, np.random.default_rng(6), max_side=140)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    argv = [
        "label", "--source", f"s3://{flow_env.bucket}/images", "--dataset", "killed-a",
        "--prompts", "box . disc", "--detector", "grounding-dino-test",
        "--segmenter", "efficientvit-sam-test", "--random-weights", "--box-threshold", "0",
        "--text-threshold", "0", "--max-detections", "3", "--shard-size", "8",
        "--batch-size", "2",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "AUTOLABEL_PREFECT_API": "server",
    }
    code = f"from autolabel.flows.cli import main; main({argv!r})"
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 240
    while done_count(flow_env, "killed-a") < 6:
        assert worker.poll() is None, "the worker finished before it could be killed"
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    interrupted_at = done_count(flow_env, "killed-a")
    assert 6 <= interrupted_at < 24

    resumed = subprocess.run([sys.executable, "-c", code], env=env, timeout=600, check=False)
    assert resumed.returncode == 0
    assert done_count(flow_env, "killed-a") == 24
    clean = autolabel_dataset(
        make_job(flow_env, "killed-b", shard_size=8, batch_size=2, pattern=None)
    )
    assert clean.images_done == 24
    assert annotations_by_key(flow_env, "killed-a") == annotations_by_key(flow_env, "killed-b")
