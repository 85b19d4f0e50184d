"""A real Label Studio 1.23.2 server (SQLite, started by label_studio_server.py) imports our
`tasks.json` through its API and holds every predicted region as we wrote it: type, label,
score, model version and a brush RLE that Label Studio's own decoder turns into exactly our mask;
the images open through its local-files serving. The server does not check brush RLE on import,
so the test reads back what the editor loads, not only the import's answer."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.review_tools.label_studio_api import LabelStudioApi
from tests.integration.review_tools.label_studio_steps import (
    brush_input,
    decode_regions,
    import_into_label_studio,
)
from tests.unit.tasks.export.review_data import SIZES, ReviewData

pytestmark = pytest.mark.integration


def test_label_studio_imports_our_tasks_and_holds_every_region(
    label_studio: LabelStudioApi, label_studio_data: ReviewData, tmp_path: Path
) -> None:
    data = label_studio_data
    _, tasks = import_into_label_studio(label_studio, data, tmp_path)
    files_root = label_studio.server.files_root
    regions: dict[str, dict[str, Any]] = {}
    for task in tasks:
        relative = task["data"]["image"].removeprefix("/data/local-files/?d=")
        path = files_root / relative
        name = path.relative_to(data.image_files["a.png"].parent).as_posix()
        assert label_studio.local_file(relative) == path.read_bytes()  # the editor's image
        height, width = SIZES[name]
        for prediction in task["predictions"]:
            assert prediction["model_version"] == "sam-test"
            scores = [r["score"] for r in prediction["result"]]
            assert prediction["score"] == pytest.approx(sum(scores) / len(scores))
            for region in prediction["result"]:
                ann_id = region["meta"]["autolabel_annotation_id"]
                expected = data.expected[ann_id]
                assert region["id"] == f"a{ann_id}"
                assert region["type"] == "brushlabels"
                assert (region["from_name"], region["to_name"]) == ("tag", "image")
                assert region["value"]["brushlabels"] == [expected.category]
                assert region["score"] == pytest.approx(expected.score)
                assert (region["original_height"], region["original_width"]) == (height, width)
                regions[region["id"]] = brush_input(region)
    assert sorted(regions) == sorted(f"a{i}" for i in data.expected)  # the rejected one is not
    masks = decode_regions(regions, tmp_path / "decode")
    for key, mask in masks.items():
        np.testing.assert_array_equal(mask, data.expected[int(key[1:])].mask)
