"""Boxes imported from COCO: matched to images by URL (file_name below the source, or coco_url),
clipped, validated; an image with an unusable box is rejected whole, naming the box."""

import json

import numpy as np
import pytest

from autolabel.storage.errors import FormatError
from autolabel.tasks.labeling.box_sources import CocoBoxes
from autolabel.tasks.labeling.shard import ImageRef, RejectedBoxes

COCO = {
    "images": [
        {"id": 1, "file_name": "shelf/a.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},
        {"id": 3, "file_name": "c.jpg", "coco_url": "s3://other/c.jpg", "width": 9, "height": 9},
    ],
    "categories": [{"id": 7, "name": "pallet"}, {"id": 9, "name": "box"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "score": 0.8},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [90, 40, 30, 30]},  # clipped
        {"id": 4, "image_id": 2, "category_id": 9, "bbox": [0, 0, 5, 5]},
        {"id": 5, "image_id": 3, "category_id": 7, "bbox": [1, 1, 2, 2]},
    ],
}
IMAGE = np.zeros((50, 100, 3), np.uint8)


def detect(source: CocoBoxes, url: str):  # type: ignore[no-untyped-def]
    return source.boxes([ImageRef(1, url, "e")], [IMAGE])[0]


def coco_boxes(document: object = COCO, root: str = "s3://bucket/raw/") -> CocoBoxes:
    return CocoBoxes(json.dumps(document).encode(), source_root=root, source_name="boxes.json")


def test_file_names_are_relative_to_the_source_root_and_boxes_clipped() -> None:
    source = coco_boxes()
    assert source.categories == ("pallet", "box")
    found = detect(source, "s3://bucket/raw/shelf/a.jpg")
    np.testing.assert_allclose(found.boxes_xyxy_px, [[10, 5, 30, 15], [90, 40, 100, 50]])
    assert found.category_names == ("pallet", "box")
    np.testing.assert_allclose(found.scores, [0.8, 1.0])
    assert list(found.category_ids) == [0, 1]
    assert len(detect(source, "s3://bucket/raw/b.jpg")) == 1


def test_images_are_never_matched_by_suffix_or_base_name() -> None:
    source = coco_boxes()
    assert len(detect(source, "s3://bucket/other/shelf/a.jpg")) == 0  # same suffix, other root
    assert len(detect(source, "s3://bucket/raw/other/a.jpg")) == 0  # same base name
    assert len(detect(source, "file:///data/elsewhere/b.jpg")) == 0
    assert len(detect(source, "s3://bucket/raw/unknown.jpg")) == 0


def test_coco_url_names_the_image_wherever_it_is() -> None:
    source = coco_boxes()
    assert len(detect(source, "s3://other/c.jpg")) == 1
    assert len(detect(source, "s3://bucket/raw/c.jpg")) == 0


def test_full_urls_in_file_name_are_accepted() -> None:
    document = {**COCO, "images": [{**COCO["images"][0], "file_name": "s3://x/y/a.jpg"}]}  # type: ignore[dict-item]
    document["annotations"] = COCO["annotations"][:1]  # type: ignore[index]
    assert len(detect(coco_boxes(document), "s3://x/y/a.jpg")) == 1


@pytest.mark.parametrize(
    "document",
    [b"not json", b"{}", json.dumps({**COCO, "annotations": [{"image_id": 1}]}).encode()],
)
def test_malformed_coco_is_a_format_error_naming_the_source(document: bytes) -> None:
    with pytest.raises(FormatError, match=r"s3://b/boxes\.json"):
        CocoBoxes(document, source_root="s3://b/", source_name="s3://b/boxes.json")


@pytest.mark.parametrize(
    ("bbox", "problem"),
    [
        (["NaN", 0, 5, 5], "not finite"),
        ([0, 0, "Infinity", 5], "not finite"),
        ([0, 0, 0, 5], "no area"),
        ([0, 0, 5, -2], "no area"),
        ([0, 0, 5], "not 4 numbers"),
        ([0, 0, "wide", 5], "not numeric"),
        ([200, 0, 5, 5], "lies outside the 100x50 image"),
    ],
)
def test_an_unusable_box_rejects_its_image_naming_the_box(bbox: list[object], problem: str) -> None:
    """Before: NaN/Infinity boxes (json.loads accepts them) and boxes outside the image were
    dropped silently, and the image was labeled done with whatever remained (0 annotations)."""
    bad = {"id": 8, "image_id": 2, "category_id": 9, "bbox": bbox}
    document = {**COCO, "annotations": [*COCO["annotations"], bad]}  # type: ignore[list-item]
    text = json.dumps(document).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    source = CocoBoxes(text.encode(), source_root="s3://bucket/raw/", source_name="boxes.json")
    rejected = detect(source, "s3://bucket/raw/b.jpg")
    assert isinstance(rejected, RejectedBoxes)
    assert rejected.reason.startswith("invalid_boxes: annotation 8 ")
    assert problem in rejected.reason
    assert len(detect(source, "s3://bucket/raw/shelf/a.jpg")) == 2  # other images unaffected


def test_a_bad_score_rejects_the_image() -> None:
    bad = {"id": 8, "image_id": 2, "category_id": 9, "bbox": [0, 0, 5, 5], "score": "NaN"}
    document = {**COCO, "annotations": [*COCO["annotations"], bad]}  # type: ignore[list-item]
    text = json.dumps(document).replace('"NaN"', "NaN")
    source = CocoBoxes(text.encode(), source_root="s3://bucket/raw/", source_name="boxes.json")
    rejected = detect(source, "s3://bucket/raw/b.jpg")
    assert isinstance(rejected, RejectedBoxes)
    assert "not finite" in rejected.reason


def test_category_names_longer_than_the_database_column_are_refused() -> None:
    document = {**COCO, "categories": [{"id": 7, "name": "p" * 201}, {"id": 9, "name": "box"}]}
    with pytest.raises(FormatError, match="at most 200 characters"):
        coco_boxes(document)
