"""datumaro 1.13.12 (CVAT's own format library) reads our CVAT export without loss: every mask
pixel, box, score and `autolabel_id` as written, and its CVAT for images 1.1 XML keeps them."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from autolabel.tasks.review.review_import import ReviewImportRequest, import_review
from tests.integration.review_tools.probe_io import mask_from_json
from tests.integration.review_tools.tools import FORMATS, run_probe
from tests.unit.tasks.export.review_data import SIZES, ReviewData

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("formats_venv")]


def _check_reading(items: list[dict[str, Any]], data: ReviewData, *, ids_from: str) -> None:
    """Every exported instance is one mask plus one box, equal to ours; `ids_from` says where
    our annotation id is: the COCO `id` (COCO 1.0) or the `autolabel_id` attribute (CVAT XML,
    which renumbers)."""
    assert sorted(item["id"] for item in items) == sorted(n.rsplit(".", 1)[0] for n in SIZES)
    masks, boxes = {}, {}
    for item in items:
        name = next(n for n in SIZES if n.rsplit(".", 1)[0] == item["id"])
        assert tuple(item["image_hw"]) == SIZES[name]
        for ann in item["annotations"]:
            ann_id = int(ann["id"] if ids_from == "id" else ann["attributes"]["autolabel_id"])
            assert int(ann["attributes"]["autolabel_id"]) == ann_id
            expected = data.expected[ann_id]
            assert ann["label"] == expected.category
            assert tuple(ann["bbox"]) == expected.bbox
            assert float(ann["attributes"]["score"]) == pytest.approx(expected.score)
            assert float(ann["attributes"]["predicted_iou"]) == pytest.approx(0.8)
            assert float(ann["attributes"]["stability_score"]) == pytest.approx(0.9)
            if ann["type"] == "mask":
                masks[ann_id] = mask_from_json(ann["mask"])
                assert masks[ann_id].shape == SIZES[name]  # cvat#9316: fitted to the image
            else:
                assert ann["type"] == "bbox"
                boxes[ann_id] = ann["bbox"]
    assert set(masks) == set(boxes) == set(data.expected)
    for ann_id, mask in masks.items():
        np.testing.assert_array_equal(mask, data.expected[ann_id].mask)


def test_datumaro_reads_our_cvat_export_without_loss(
    review_data: ReviewData, tmp_path: Path
) -> None:
    out = tmp_path / "cvat"
    request = ReviewExportRequest(
        dataset=review_data.dataset, format="cvat", output=str(out), with_images=True
    )
    result = export_review(request, review_data.resources(tmp_path))
    assert (result.images, result.annotations, result.images_copied) == (3, 4, 3)

    work = tmp_path / "datumaro"
    work.mkdir()
    read = run_probe(FORMATS, "datumaro_probe.py", out, work, work=work)
    assert read["version"] == "1.13.12"
    _check_reading(read["coco"], review_data, ids_from="id")
    # CVAT for images 1.1 XML (what CVAT exports) keeps masks, boxes, scores and our ids.
    _check_reading(read["cvat"], review_data, ids_from="autolabel_id")


def test_cvat_xml_written_by_datumaro_comes_back_through_our_import(
    review_data: ReviewData, tmp_path: Path
) -> None:
    """CVAT for images 1.1 XML as CVAT's own format library writes it (a mask and a box per
    object, our id as an attribute), imported untouched: every prediction accepted as it is."""
    out = tmp_path / "cvat"
    request = ReviewExportRequest(
        dataset=review_data.dataset, format="cvat", output=str(out), with_images=True
    )
    export_review(request, review_data.resources(tmp_path))
    work = tmp_path / "datumaro"
    work.mkdir()
    run_probe(FORMATS, "datumaro_probe.py", out, work, work=work)
    [xml] = sorted((work / "cvat").rglob("*.xml"))
    result = import_review(
        ReviewImportRequest(dataset=review_data.dataset, format="cvat-xml", input=str(xml)),
        review_data.resources(tmp_path),
    )
    assert result.images == len(SIZES)
    assert (result.accepted, result.corrected, result.rejected, result.added) == (4, 0, 0, 0)
    assert result.skipped_items == 4  # the boxes datumaro writes beside each mask
