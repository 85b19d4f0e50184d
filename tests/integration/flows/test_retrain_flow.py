"""Flow `retrain-sam` on synthetic SA-1B shards: train, evaluate, register, promote or refuse.

Runs against PostgreSQL (model registry) and moto S3 (data and trained weights) with the tiny
`efficientvit-sam-test` architecture, which has no released weights: the first retraining starts
from random initialisation (`from_scratch`).
"""

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from autolabel.flows.retrain import RetrainRequest, retrain_sam
from autolabel.storage.config import S3Config
from autolabel.storage.objectstore import open_store
from tests.integration.flows.conftest import FlowEnv
from tests.synthetic import TRAINABLE_SHAPES, write_synthetic_shards, write_with_bad_rles

pytestmark = pytest.mark.integration


def request_on(env: FlowEnv, **fields: object) -> RetrainRequest:
    """A retraining of the test architecture on the bucket's `sa1b/train` and `sa1b/holdout`."""
    return RetrainRequest.model_validate(
        {
            "data": f"s3://{env.bucket}/sa1b/train",
            "holdout": f"s3://{env.bucket}/sa1b/holdout",
            "model": "efficientvit-sam-test",
            "models_url": f"s3://{env.bucket}/models",
            "images_per_batch": 1,
            "max_masks": 1,
            **fields,
        }
    )


def versions(env: FlowEnv) -> list[tuple[str, str]]:
    engine = create_engine(env.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, stage FROM model_versions ORDER BY id"))
            return [(str(n), str(s)) for n, s in rows]
    finally:
        engine.dispose()


@pytest.mark.timeout(900)
def test_better_candidate_is_promoted_and_a_worse_one_is_not(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    shapes = TRAINABLE_SHAPES
    write_synthetic_shards(tmp_path / "train", shards=2, images_per_shard=4, seed=0, **shapes)
    write_synthetic_shards(tmp_path / "holdout", shards=1, images_per_shard=4, seed=99, **shapes)
    flow_env.upload_folder(tmp_path / "train", "sa1b/train/")
    flow_env.upload_folder(tmp_path / "holdout", "sa1b/holdout/")
    request = request_on(flow_env, max_steps=60, lr=1e-3, margin=0.0, from_scratch=True)
    first = retrain_sam(request)
    # The loss curve stored with the training falls (this is also the test model's fine-tune
    # acceptance check: tests/integration/training/test_finetune.py runs it apart under `slow`).
    store = open_store(first.training_url, s3=S3Config(endpoint_url=flow_env.endpoint_url))
    losses = [json.loads(line)["loss"] for line in store.get("metrics.jsonl").splitlines()]
    assert len(losses) == request.max_steps
    k = len(losses) // 5
    assert sum(losses[-k:]) / k < 0.8 * sum(losses[:k]) / k
    assert first.production is not None
    assert first.production.name == "random-init"
    assert first.candidate.metrics["miou"] > first.production.metrics["miou"] + 0.25
    assert first.promoted, first.reason
    assert versions(flow_env) == [(first.candidate.name, "production")]
    stored = flow_env.s3().head_object(
        Bucket=flow_env.bucket, Key=f"models/{first.candidate.name}.pt"
    )
    assert stored["ContentLength"] > 0
    assert first.weights_uri.endswith(f"{first.candidate.name}.pt")

    # The second run starts from the production version; demanding a gain of 1.0 mIoU (the
    # whole range) makes any candidate worse than required: it is registered, not promoted.
    second = retrain_sam(request.model_copy(update={"max_steps": 2, "margin": 1.0}))
    assert second.production is not None
    assert second.production.name == first.candidate.name
    assert not second.promoted
    assert "does not beat" in second.reason
    assert versions(flow_env) == [
        (first.candidate.name, "production"),
        (second.candidate.name, "candidate"),
    ]


@pytest.mark.timeout(300)
def test_no_promotion_on_a_holdout_with_too_many_bad_items(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    write_synthetic_shards(tmp_path / "train", shards=1, images_per_shard=2, height=48, width=64)
    write_with_bad_rles(
        tmp_path / "holdout", count=4, bad_ids={2, 3}, seed=5, shard_name="sa_000000.tar"
    )
    flow_env.upload_folder(tmp_path / "train", "sa1b/train/")
    flow_env.upload_folder(tmp_path / "holdout", "sa1b/holdout/")
    result = retrain_sam(request_on(flow_env, max_steps=2, margin=0.0, from_scratch=True))
    assert not result.promoted
    assert result.reason == (
        f"not deciding: the held-out evaluation of {result.candidate.name} skipped 2 of 4 items "
        "(50.0% > 5.0%)"
    )
    assert (result.candidate.items.used, result.candidate.items.skipped) == (2, 2)
    assert result.production is not None
    assert (result.production.items.used, result.production.items.skipped) == (2, 2)
    assert (result.training_data.used, result.training_data.skipped) == (2, 0)
    assert versions(flow_env) == [(result.candidate.name, "candidate")]
