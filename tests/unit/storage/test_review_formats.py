"""Review-tool formats: Label Studio config, regions and image URLs; CVAT / FiftyOne records."""

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import numpy as np
import pytest

from autolabel.storage.brush_rle import decode_brush
from autolabel.storage.config import S3Config
from autolabel.storage.errors import FormatError, StorageConfigError
from autolabel.storage.label_studio import (
    FROM_NAME,
    TO_NAME,
    annotation_id_of,
    brush_region,
    labeling_config,
    prediction,
)
from autolabel.storage.mask_clip import fit_instance
from autolabel.storage.review_coco import review_annotation_record, review_image_record
from autolabel.storage.review_urls import ReviewImageUrls, local_files_url
from autolabel.storage.rle import encode_mask


def test_labeling_config_names_every_category_and_matches_region_names() -> None:
    text = labeling_config(["cat", 'forklift "big" & <red>'])
    xml = ET.fromstring(text)  # noqa: S314 - our own output
    image, brush = xml.find("Image"), xml.find("BrushLabels")
    assert image is not None
    assert brush is not None
    assert (image.get("name"), image.get("value")) == (TO_NAME, f"${TO_NAME}")
    assert (brush.get("name"), brush.get("toName")) == (FROM_NAME, TO_NAME)
    assert [label.get("value") for label in brush] == ["cat", 'forklift "big" & <red>']


def test_brush_region_carries_mask_label_score_and_our_id() -> None:
    mask = np.zeros((5, 7), dtype=np.bool_)
    mask[1:4, 2:6] = True
    region = brush_region(
        annotation_id=42, label="cat", mask_hw=mask, score=0.75, meta={"predicted_iou": 0.9}
    )
    assert region["id"] == "a42"
    assert region["type"] == "brushlabels"
    assert (region["from_name"], region["to_name"]) == (FROM_NAME, TO_NAME)
    assert (region["original_width"], region["original_height"]) == (7, 5)
    assert region["value"]["brushlabels"] == ["cat"]
    assert region["value"]["format"] == "rle"
    np.testing.assert_array_equal(decode_brush(region["value"]["rle"], height=5, width=7), mask)
    assert region["score"] == 0.75
    assert region["meta"] == {"autolabel_annotation_id": 42, "predicted_iou": 0.9}
    assert annotation_id_of(region) == 42
    assert annotation_id_of({"id": "a17"}) == 17
    assert annotation_id_of({"id": "Xy12ab"}) is None


def test_prediction_score_is_the_mean_region_score() -> None:
    regions = [{"score": 0.5}, {"score": 0.9}, {}]
    assert prediction("m1", regions)["score"] == pytest.approx(0.7)
    assert prediction("m1", [])["score"] == 0.0


def _urls(mode: str, **kwargs: object) -> ReviewImageUrls:
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret",  # noqa: S106 - signs nothing real
        region_name="us-east-1",
    )
    s3 = S3Config(endpoint_url="http://127.0.0.1:9", region="us-east-1", path_style=True)
    return ReviewImageUrls(mode=mode, s3=s3, session=session, **kwargs)  # type: ignore[arg-type]


def test_presigned_url_uses_the_s3_settings_and_the_expiry() -> None:
    url = _urls("presigned", expiry_seconds=3600)("s3://raw/batch 1/a.jpg")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "http",
        "127.0.0.1:9",
        "/raw/batch%201/a.jpg",
    )
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "X-Amz-Signature" in query


def test_s3_mode_keeps_the_url_and_file_images_get_local_files_urls(tmp_path: Path) -> None:
    urls = _urls("s3", local_files_root=tmp_path)
    assert urls("s3://raw/a.jpg") == "s3://raw/a.jpg"
    image = (tmp_path / "sub dir" / "b.png").as_uri()
    assert urls(image) == "/data/local-files/?d=sub%20dir/b.png"
    assert (
        local_files_url(image, document_root=tmp_path / "sub dir") == "/data/local-files/?d=b.png"
    )


def test_bad_image_url_options_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="local-files-root"):
        _urls("presigned")((tmp_path / "a.png").as_uri())
    with pytest.raises(StorageConfigError, match="below the local-files document root"):
        _urls("s3", local_files_root=tmp_path / "other")((tmp_path / "a.png").as_uri())
    with pytest.raises(StorageConfigError, match="604800"):
        _urls("presigned", expiry_seconds=8 * 86400)
    with pytest.raises(FormatError):
        _urls("s3")("http://example.com/a.jpg")


def test_coco_records_place_scores_for_each_tool() -> None:
    mask = np.zeros((6, 8), dtype=np.bool_)
    mask[1:3, 1:4] = True
    fitted = fit_instance(encode_mask(mask), (1.0, 1.0, 3.0, 2.0), 6.0, height=6, width=8)
    common = {
        "annotation_id": 5, "image_id": 2, "category_id": 3, "fitted": fitted, "iscrowd": False,
        "score": 0.6, "predicted_iou": 0.8, "stability_score": None,
    }  # fmt: skip
    cvat = review_annotation_record(flavor="cvat", **common)  # type: ignore[arg-type]
    assert cvat["score"] == 0.6
    assert cvat["attributes"] == {
        "occluded": False, "score": 0.6, "predicted_iou": 0.8, "autolabel_id": 5,
    }  # fmt: skip
    fiftyone = review_annotation_record(flavor="fiftyone", **common)  # type: ignore[arg-type]
    assert (fiftyone["score"], fiftyone["predicted_iou"]) == (0.6, 0.8)
    assert "attributes" not in fiftyone
    assert "stability_score" not in fiftyone
    image = review_image_record(
        image_id=2, storage_key="s3://raw/batch1/x.jpg", width=8, height=6, image_root="s3://raw"
    )
    assert (image["file_name"], image["coco_url"]) == ("batch1/x.jpg", "s3://raw/batch1/x.jpg")
