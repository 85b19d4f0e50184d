"""Label Studio image URLs of S3 images (no Label Studio server needed): presigned URLs open the
images on S3 (moto), raw `s3://` URLs are written for a bucket connected as cloud storage, and
the export itself lands in S3."""

import json
import urllib.request
from pathlib import Path

import pytest

from autolabel.storage.config import S3Config
from autolabel.storage.objectstore import open_store
from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from tests.conftest import PostgresDatabases
from tests.unit.tasks.export.review_data import SIZES, make_review_data

pytestmark = pytest.mark.integration


def test_label_studio_presigned_urls_open_the_images_and_exports_land_in_s3(
    postgres_databases: PostgresDatabases, s3_bucket: str, s3_env: str, tmp_path: Path
) -> None:
    s3 = S3Config(endpoint_url=s3_env, region="us-east-1", path_style=True)
    images = open_store(f"s3://{s3_bucket}/raw", s3=s3)
    data = make_review_data(tmp_path, database_url=postgres_databases.create(), image_store=images)
    output = f"s3://{s3_bucket}/review/ls"
    request = ReviewExportRequest(
        dataset=data.dataset, format="label-studio", output=output, expiry_seconds=600
    )
    result = export_review(request, data.resources(tmp_path, s3))
    assert result.files == [f"{output}/tasks.json", f"{output}/labeling_config.xml"]
    tasks = json.loads(open_store(output, s3=s3).get("tasks.json"))
    for task, (name, path) in zip(tasks, data.image_files.items(), strict=True):
        assert task["data"]["autolabel_storage_url"] == f"s3://{s3_bucket}/raw/{name}"
        url = task["data"]["image"]
        assert url.startswith(s3_env)
        assert "X-Amz-Expires=600" in url
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - moto's http
            assert response.read() == path.read_bytes()
    raw = ReviewExportRequest(
        dataset=data.dataset, format="label-studio", output=output, url_mode="s3"
    )
    export_review(raw, data.resources(tmp_path, s3))
    tasks = json.loads(open_store(output, s3=s3).get("tasks.json"))
    assert [t["data"]["image"] for t in tasks] == [f"s3://{s3_bucket}/raw/{n}" for n in SIZES]
