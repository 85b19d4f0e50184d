"""Reading the tools' review files: Label Studio regions (brush, polygon, other), parts of one
polygon export united, reviewers and times; malformed files named in one line."""

from typing import Any

import numpy as np
import pytest

from autolabel.storage.errors import FormatError
from autolabel.storage.label_studio import (
    brush_region,
    labeling_config,
    polygon_regions,
    reviewed_tasks,
)
from autolabel.storage.rle import decode_rle, encode_mask, rle_iou


def _two_blobs() -> np.ndarray:
    mask = np.zeros((30, 40), dtype=np.bool_)
    mask[2:10, 3:15] = True
    mask[15:28, 20:38] = True
    return mask


def _task(result: list[dict[str, Any]], **annotation: Any) -> dict[str, Any]:
    return {
        "id": 5,
        "data": {"image": "/x.png", "autolabel_image_id": 9, "autolabel_storage_url": "s3://b/x"},
        "predictions": [{"result": [{"id": "a1"}, {"id": "a2"}]}],
        "annotations": [{"id": 1, "result": result, "was_cancelled": False, **annotation}],
    }


def test_polygon_regions_of_a_two_part_mask_come_back_as_one_object() -> None:
    mask = _two_blobs()
    regions = polygon_regions(annotation_id=1, label="cat", mask_hw=mask, score=0.7)
    assert [r["id"] for r in regions] == ["a1", "a1p1"]
    assert all(r["type"] == "polygonlabels" for r in regions)
    assert all(0 <= v <= 100 for r in regions for p in r["value"]["points"] for v in p)
    assert "<PolygonLabels" in labeling_config(["cat"], "polygon")
    [image] = reviewed_tasks([_task(regions, completed_by=3, updated_at="2026-12-01T10:00:00Z")])
    [item] = image.items
    assert (item.annotation_id, item.category, item.item_key) == (1, "cat", "a1+a1p1")
    assert rle_iou(item.rle, encode_mask(mask)) > 0.95
    assert (image.image_id, image.image_key, image.shown_ids) == (9, "s3://b/x", frozenset({1, 2}))
    assert image.reviewer == "label-studio user 3"
    assert str(image.reviewed_at) == "2026-12-01 10:00:00+00:00"


def test_brush_regions_are_exact_and_other_shapes_are_skipped() -> None:
    mask = _two_blobs()
    brush = brush_region(annotation_id=2, label="dog", mask_hw=mask, score=None)
    drawn = {**{k: v for k, v in brush.items() if k != "meta"}, "id": "zz9"}
    rect = {"id": "r1", "type": "rectanglelabels", "value": {"x": 1, "y": 1}}
    [image] = reviewed_tasks([_task([brush, drawn, rect])])
    assert [(i.annotation_id, i.item_key) for i in image.items] == [(None, "zz9"), (2, "a2")]
    assert all(np.array_equal(decode_rle(i.rle), mask) for i in image.items)
    assert len(image.skipped) == 1
    assert "rectanglelabels" in image.skipped[0]


def test_tasks_without_a_finished_annotation_are_not_reviewed() -> None:
    skipped = _task([], was_cancelled=True)
    nobody = {**_task([]), "annotations": []}
    assert reviewed_tasks([skipped, nobody]) == []


@pytest.mark.parametrize(
    ("doc", "word"),
    [
        ({"tasks": []}, "list of task"),
        ([_task([{"id": "b", "type": "brushlabels", "value": {"rle": [1]}}])], "original_width"),
        (
            [_task([{"id": "p", "type": "polygonlabels", "original_width": 4,
                     "original_height": 4, "value": {"points": [[1, 1]]}}])],
            "polygon",
        ),
    ],
)  # fmt: skip
def test_malformed_label_studio_exports_are_named(doc: Any, word: str) -> None:
    with pytest.raises(FormatError, match=word):
        reviewed_tasks(doc)
