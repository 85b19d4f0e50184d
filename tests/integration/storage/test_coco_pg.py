"""COCO export/import on PostgreSQL (server-side cursors, COPY path), to a moto S3 bucket."""

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autolabel.storage.config import S3Config
from autolabel.storage.db.coco_export import write_coco, write_coco_json
from autolabel.storage.db.coco_import import import_coco
from autolabel.storage.db.tables import Annotation
from autolabel.storage.objectstore import open_store
from autolabel.storage.sa1b import read_shard, write_shard
from tests.unit.storage.test_coco import evaluate_against_itself, populate
from tests.unit.storage.test_sa1b import make_samples

pytestmark = pytest.mark.integration


def test_export_to_s3_loads_and_scores_perfectly(
    session: Session, s3_bucket: str, s3_env: str, tmp_path: Path
) -> None:
    dataset_id, _run = populate(session, n_images=6, seed=3)
    store = open_store(
        f"s3://{s3_bucket}/exports", s3=S3Config(endpoint_url=s3_env, region="us-east-1")
    )
    stats = write_coco_json(session, dataset_id=dataset_id, destination=(store, "ds/coco.json"))
    assert stats.n_annotations == 21
    local = tmp_path / "coco.json"
    local.write_bytes(store.get("ds/coco.json"))
    coco = COCO(str(local))
    assert len(coco.getAnnIds()) == 21
    assert evaluate_against_itself(local, "segm") == pytest.approx(1.0)


def test_streamed_export_matches_across_fetch_sizes(session: Session, tmp_path: Path) -> None:
    dataset_id, _run = populate(session, n_images=8, seed=4)
    outputs = []
    for batch_size in (3, 10_000):  # many server-side cursor fetches vs one
        path = tmp_path / f"b{batch_size}.json"
        with path.open("w") as fh:
            write_coco(session, fh, dataset_id=dataset_id, batch_size=batch_size)
        outputs.append(json.loads(path.read_text()))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]["annotations"]) == 36


def test_import_roundtrip_on_postgres(session: Session, tmp_path: Path) -> None:
    dataset_id, _run = populate(session, n_images=4, seed=5)
    exported = tmp_path / "e.json"
    write_coco_json(session, dataset_id=dataset_id, destination=exported)
    first = import_coco(session, dataset_name="pg-copy", coco=exported, source="e")
    second = import_coco(session, dataset_name="pg-copy", coco=exported, source="e")
    assert first.n_annotations_inserted == 10
    assert second.n_annotations_inserted == 10  # replaced, not added
    count = select(func.count()).where(Annotation.dataset_id == first.dataset_id)
    assert session.execute(count).scalar_one() == 10
    again = tmp_path / "again.json"
    write_coco_json(session, dataset_id=first.dataset_id, destination=again)
    assert evaluate_against_itself(again, "segm") == pytest.approx(1.0)


def test_sa1b_shard_streams_from_s3(s3_bucket: str, s3_env: str, tmp_path: Path) -> None:
    samples = make_samples(4)
    shard = tmp_path / "sa_000000.tar"
    write_shard(shard, samples)
    store = open_store(f"s3://{s3_bucket}", s3=S3Config(endpoint_url=s3_env, region="us-east-1"))
    store.put_file("shards/sa_000000.tar", shard)
    with store.open("shards/sa_000000.tar") as stream:
        assert list(read_shard(stream, name="s3://bucket/shards/sa_000000.tar")) == samples
