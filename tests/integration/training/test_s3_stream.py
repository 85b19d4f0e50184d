"""Training data streamed from S3 (moto server): shards split, a damaged one named and skipped."""

from pathlib import Path

import boto3
import pytest

from autolabel.storage.config import S3Config
from autolabel.tasks.training.data import BadData, DataItem, Sa1bStream, StreamConfig, list_units
from tests.synthetic import write_synthetic_shards

pytestmark = pytest.mark.integration


def test_stream_from_s3_reports_the_damaged_shard(
    s3_bucket: str, s3_env: str, tmp_path: Path
) -> None:
    paths = write_synthetic_shards(tmp_path, shards=3, images_per_shard=2, height=48, width=64)
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    for path in paths:
        data = path.read_bytes()
        if path.name == "sa_000002.tar":
            data = data[:2000]
        client.put_object(Bucket=s3_bucket, Key=f"sa1b/{path.name}", Body=data)
    source = f"s3://{s3_bucket}/sa1b"
    s3 = S3Config(endpoint_url=s3_env, region="us-east-1")
    units = list_units(source, s3=s3)
    assert units == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    items = [
        item
        for rank in range(2)
        for item in Sa1bStream(
            source, units, StreamConfig(input_size=128), rank=rank, world_size=2, s3=s3
        )
    ]
    bad = [i.name for i in items if isinstance(i, BadData)]
    assert bad == [f"s3://{s3_bucket}/sa1b/sa_000002.tar"]
    ids = sorted(i.sample.sample.image_id for i in items if isinstance(i, DataItem))
    assert {1, 2, 3, 4} <= set(ids)
