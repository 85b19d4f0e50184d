"""Uncertainty sampling on PostgreSQL: `autolabel sample-review` picks the planted uncertain
images of a stored set and exports exactly them; `export-review --images-from` exports a saved
selection later; the flow `sample-for-review` chooses, saves and exports the same set."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from autolabel.flows.settings import get_settings
from tests.cli_runner import run_in_process
from tests.conftest import PostgresDatabases
from tests.unit.tasks.sampling.planted import PLANTED, PlantedSet, make_planted_set

pytestmark = pytest.mark.integration


@pytest.fixture
def planted(
    postgres_databases: PostgresDatabases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PlantedSet]:
    """The planted set in a fresh PostgreSQL database, which AUTOLABEL_* points at."""
    data = make_planted_set(tmp_path, database_url=postgres_databases.create())
    for name in list(os.environ):
        if name.startswith("AUTOLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", data.database_url.render_as_string())
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def _exported_names(labels: dict[str, object]) -> list[str]:
    images = labels["images"]
    assert isinstance(images, list)
    return sorted(image["file_name"] for image in images)


def test_cli_samples_the_planted_images_and_exports_exactly_them(
    planted: PlantedSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    selection_file = tmp_path / "selection.json"
    out = tmp_path / "cvat"
    args = ["sample-review", "--dataset", planted.dataset, "--budget", "5"]
    export = ["--export-format", "cvat", "--export-output", str(out)]
    code, stdout, stderr = run_in_process([*args, "--output", str(selection_file), *export], capsys)
    assert code == 0, stderr
    selection = json.loads(selection_file.read_text())
    by_key = {key: name for name, key in planted.keys.items()}
    drivers = {by_key[image["storage_key"]]: image["driver"] for image in selection["chosen"]}
    assert drivers == PLANTED
    assert selection["policy"]["weights"]["rarity"] == 1.0
    coco = json.loads((out / "annotations" / "instances_default.json").read_text())
    assert _exported_names(coco) == sorted(PLANTED)
    chosen_ids = {image["image_id"] for image in selection["chosen"]}
    assert {image["id"] for image in coco["images"]} == chosen_ids
    assert {a["image_id"] for a in coco["annotations"]} == chosen_ids
    assert "wrote 10 annotations of 5 images for cvat" in stdout

    later = tmp_path / "fiftyone"
    args = ["export-review", "--dataset", planted.dataset, "--format", "fiftyone"]
    code, stdout, stderr = run_in_process(
        [*args, "--output", str(later), "--images-from", str(selection_file)], capsys
    )
    assert code == 0, stderr
    assert _exported_names(json.loads((later / "labels.json").read_text())) == sorted(PLANTED)

    for bad, message in [
        (["--images-from", str(tmp_path / "none.json")], "cannot read the selection"),
        (["--dataset", "other", "--images-from", str(selection_file)], "dataset 'other'"),
    ]:
        args = ["export-review", "--dataset", planted.dataset, "--format", "cvat", "--output"]
        code, _, stderr = run_in_process([*args, str(tmp_path / "x"), *bad], capsys)
        assert code == 2
        assert len(stderr.strip().splitlines()) == 1
        assert message in stderr


def test_annotation_budget_and_weights_on_postgres(
    planted: PlantedSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    selection_file = tmp_path / "selection.json"
    args = ["sample-review", "--dataset", planted.dataset, "--output", str(selection_file)]
    code, stdout, stderr = run_in_process(
        [*args, "--budget", "4", "--unit", "annotations", "--weights", "rarity=0"], capsys
    )
    assert code == 0, stderr
    selection = json.loads(selection_file.read_text())
    by_key = {key: name for name, key in planted.keys.items()}
    chosen = [by_key[image["storage_key"]] for image in selection["chosen"]]
    # box_mask (2 annotations) and near_threshold (2) fill the 4; rare drops out without rarity
    assert chosen == ["box_mask.png", "near_threshold.png"]
    assert selection["budget_used"] == 4
    assert "(4 of 4 annotations)" in stdout


def test_flow_chooses_saves_and_exports(
    planted: PlantedSet, tmp_path: Path, prefect_harness: None
) -> None:
    from autolabel.flows.sample_review import ReviewExportRequest, SampleRequest, sample_for_review
    from autolabel.tasks.sampling.uncertainty import SamplingPolicy

    request = SampleRequest(dataset=planted.dataset, policy=SamplingPolicy(budget=5))
    export = ReviewExportRequest(
        dataset=planted.dataset, format="fiftyone", output=str(tmp_path / "fo")
    )
    result = sample_for_review(request, output=str(tmp_path / "sel.json"), export=export)
    assert result.selection_file == str(tmp_path / "sel.json")
    assert result.export is not None
    assert (result.export.images, result.export.annotations) == (5, 10)
    by_key = {key: name for name, key in planted.keys.items()}
    assert {by_key[image.storage_key] for image in result.selection.chosen} == set(PLANTED)
    labels = json.loads((tmp_path / "fo" / "labels.json").read_text())
    assert _exported_names(labels) == sorted(PLANTED)
