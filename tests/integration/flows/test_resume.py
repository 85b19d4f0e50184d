"""Crashes mid-run lose nothing and duplicate nothing: a rerun completes exactly what is missing.

Each test labels the same images twice: once interrupted then resumed (dataset A), once in one
clean run (dataset B). Seeded random weights make both runs produce the same masks, so the two
datasets must end up with identical annotations. Killed processes (the command line, a served
worker) are in the fault suite, tests/integration/faults/.
"""

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
    [(status, reason, done)] = db_rows(
        flow_env,
        "SELECT r.status, r.status_reason, r.images_done FROM label_runs r "
        "JOIN datasets d ON d.id = r.dataset_id WHERE d.name = 'crash-a'",
    )
    assert (status, done) == ("failed", 4)  # recorded with the work it did, never left running
    assert reason == "error: RuntimeError: worker lost mid-batch"
    monkeypatch.setattr(shard, "write_image_batch", real_write)

    resumed = autolabel_dataset(make_job(flow_env, "crash-a", shard_size=12, batch_size=4))
    assert (resumed.images_done, resumed.images_skipped) == (8, 4)
    clean = autolabel_dataset(make_job(flow_env, "crash-b", shard_size=12, batch_size=4))
    assert clean.images_done == 12
    resumed_rows = annotations_by_key(flow_env, "crash-a")
    assert resumed_rows == annotations_by_key(flow_env, "crash-b")
    assert len(resumed_rows) > 0
