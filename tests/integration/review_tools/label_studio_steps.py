"""Steps of the Label Studio tests: our export imported into a project, and Label Studio's own
brush RLE codec (label_studio_sdk.converter.brush, run in its venv by label_studio_probe.py)."""

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from tests.integration.review_tools.label_studio_api import LabelStudioApi
from tests.integration.review_tools.probe_io import mask_from_json, mask_to_json
from tests.integration.review_tools.tools import LABEL_STUDIO, run_probe
from tests.unit.tasks.export.review_data import ReviewData


def import_into_label_studio(
    api: LabelStudioApi, data: ReviewData, tmp_path: Path
) -> tuple[int, list[dict[str, Any]]]:
    """Export `data` for Label Studio, create a project with our labeling config, connect the
    images' folder as local-files storage and import `tasks.json`; returns the project id and
    its tasks as the server holds them (in import order)."""
    files_root = api.server.files_root
    out = tmp_path / "label-studio"
    request = ReviewExportRequest(
        dataset=data.dataset,
        format="label-studio",
        output=str(out),
        local_files_root=str(files_root),
    )
    result = export_review(request, data.resources(tmp_path))
    assert (result.images, result.annotations) == (3, 4)
    config = (out / "labeling_config.xml").read_text()
    project = api.create_project(f"autolabel review {uuid.uuid4().hex[:8]}", config)
    api.connect_local_files(project, data.image_files["a.png"].parent)
    tasks = json.loads((out / "tasks.json").read_text())
    counts = api.import_tasks(project, tasks)
    assert (counts["task_count"], counts["prediction_count"]) == (3, 2)
    held = sorted(api.tasks(project), key=lambda t: t["id"])
    assert [t["data"] for t in held] == [t["data"] for t in tasks]
    return project, held


def decode_regions(
    regions: dict[str, dict[str, Any]], work: Path
) -> dict[str, npt.NDArray[np.bool_]]:
    """Label Studio's own decoding (label_studio_sdk.converter.brush) of brush regions by key:
    {key: (H, W) bool mask}; every alpha value is 0 or 255."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / "regions.json"
    source.write_text(json.dumps(regions))
    decoded = run_probe(LABEL_STUDIO, "label_studio_probe.py", "decode", source, work=work)
    for key, doc in decoded.items():
        assert set(doc["alpha_values"]) <= {0, 255}, key
    return {key: mask_from_json(doc["mask"]) for key, doc in decoded.items()}


def brush_input(region: dict[str, Any]) -> dict[str, Any]:
    """A region's brush RLE and image size, as decode_regions takes them."""
    value = region["value"]
    assert value["format"] == "rle"
    return {
        "rle": value["rle"],
        "width": region["original_width"],
        "height": region["original_height"],
    }


def encode_masks(masks: dict[str, npt.NDArray[np.bool_]], work: Path) -> dict[str, list[int]]:
    """Label Studio's brush RLE (`mask2rle`) of (H, W) bool masks, by key."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / "masks.json"
    source.write_text(json.dumps({key: mask_to_json(mask) for key, mask in masks.items()}))
    encoded: dict[str, list[int]] = run_probe(
        LABEL_STUDIO, "label_studio_probe.py", "encode", source, work=work
    )
    return encoded
