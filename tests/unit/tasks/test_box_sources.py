"""Boxes imported from COCO: matched to images by file name, clipped, validated."""

import json

import numpy as np
import pytest

from autolabel.storage.errors import FormatError
from autolabel.tasks.box_sources import CocoBoxes
from autolabel.tasks.labeling import ImageRef

COCO = {
    "images": [
        {"id": 1, "file_name": "shelf/a.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},
    ],
    "categories": [{"id": 7, "name": "pallet"}, {"id": 9, "name": "box"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "score": 0.8},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [90, 40, 30, 30]},  # clipped
        {"id": 3, "image_id": 1, "category_id": 9, "bbox": [200, 0, 5, 5]},  # outside: dropped
        {"id": 4, "image_id": 2, "category_id": 9, "bbox": [0, 0, 5, 5]},
    ],
}
IMAGE = np.zeros((50, 100, 3), np.uint8)


def detect(source: CocoBoxes, url: str):  # type: ignore[no-untyped-def]
    return source.boxes([ImageRef(1, url, "e")], [IMAGE])[0]


def test_boxes_are_matched_by_path_suffix_and_clipped() -> None:
    source = CocoBoxes(json.dumps(COCO).encode())
    assert source.categories == ("pallet", "box")
    found = detect(source, "s3://bucket/raw/shelf/a.jpg")
    np.testing.assert_allclose(found.boxes_xyxy_px, [[10, 5, 30, 15], [90, 40, 100, 50]])
    assert found.category_names == ("pallet", "box")
    np.testing.assert_allclose(found.scores, [0.8, 1.0])
    assert list(found.category_ids) == [0, 1]


def test_base_name_fallback_and_unknown_images() -> None:
    source = CocoBoxes(json.dumps(COCO).encode())
    assert len(detect(source, "file:///data/elsewhere/b.jpg")) == 1
    assert len(detect(source, "s3://bucket/other/a.jpg")) == 2  # base name of shelf/a.jpg
    assert len(detect(source, "s3://bucket/unknown.jpg")) == 0


@pytest.mark.parametrize(
    "document",
    [b"not json", b"{}", json.dumps({**COCO, "annotations": [{"image_id": 1}]}).encode()],
)
def test_malformed_coco_is_a_format_error_naming_the_source(document: bytes) -> None:
    with pytest.raises(FormatError, match=r"s3://b/boxes\.json"):
        CocoBoxes(document, source_name="s3://b/boxes.json")
