"""Sampling for review on a stored set (SQLite): the planted images are chosen, the selection
round-trips through JSON, an export holds exactly the chosen images, and bad input is one line."""

import json
from pathlib import Path
from typing import Any

import pytest

from autolabel.storage.db.engine import make_engine, session_scope
from autolabel.storage.db.queries import find_dataset, image_ids_by_key
from autolabel.storage.db.sampling_rows import SignalFilter, iter_signal_rows
from autolabel.storage.db.tables import ReviewedImage, ReviewImport
from autolabel.storage.errors import FormatError, StorageConfigError
from autolabel.tasks.export.review_export import ReviewExportRequest
from autolabel.tasks.sampling.review_sample import (
    SampleRequest,
    export_selection,
    load_selection,
    restrict_to_selection,
    sample_for_review,
    save_selection,
)
from autolabel.tasks.sampling.uncertainty import SamplingPolicy, SignalWeights
from tests.cli_runner import run_in_process
from tests.unit.tasks.sampling.planted import PLANTED, REVIEWED, PlantedSet, make_planted_set


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> PlantedSet:
    return make_planted_set(tmp_path_factory.mktemp("planted"))


def _sample(planted: PlantedSet, tmp_path: Path, **options: Any) -> Any:
    policy = SamplingPolicy(budget=options.pop("budget", 5), **options.pop("policy", {}))
    request = SampleRequest(dataset=planted.dataset, policy=policy, **options)
    return sample_for_review(request, planted.resources(tmp_path))


def _names(planted: PlantedSet, keys: list[str]) -> list[str]:
    by_key = {key: name for name, key in planted.keys.items()}
    return [by_key[key] for key in keys]


def test_the_stored_signals_carry_the_runs_thresholds_and_the_masks_box(
    planted: PlantedSet,
) -> None:
    engine = make_engine(planted.database_url)
    with session_scope(engine) as session:
        dataset_id = find_dataset(session, name=planted.dataset)
        assert dataset_id is not None
        rows = list(iter_signal_rows(session, dataset_id=dataset_id, flt=SignalFilter()))
        everything = SignalFilter(run_id=planted.run_id, include_reviewed=True)
        with_reviewed = list(iter_signal_rows(session, dataset_id=dataset_id, flt=everything))
    engine.dispose()
    assert planted.key(REVIEWED) not in {row.storage_key for row in rows}
    assert len(with_reviewed) == len(rows) + 2
    assert sum(row.accepted for row in with_reviewed) == 1
    box_mask = next(row for row in rows if row.storage_key == planted.key("box_mask.png"))
    assert box_mask.bbox_xywh_px == (2.0, 2.0, 24.0, 24.0)
    assert box_mask.mask_bbox_xywh_px == (2.0, 2.0, 6.0, 6.0)
    others = [row for row in rows if row.annotation_id != box_mask.annotation_id]
    assert all(row.bbox_xywh_px == row.mask_bbox_xywh_px for row in others)
    thresholds = {row.score_threshold for row in rows if row.storage_key != planted.key("rare.png")}
    assert thresholds == {0.3}
    rare = [row for row in rows if row.storage_key == planted.key("rare.png")]
    assert sorted(row.score_threshold for row in rare) == [0.3, 0.3, 0.5]  # forklift: its own


def test_sampling_picks_exactly_the_planted_images(planted: PlantedSet, tmp_path: Path) -> None:
    selection = _sample(planted, tmp_path)
    names = _names(planted, [c.storage_key for c in selection.chosen])
    chosen = dict(zip(names, selection.chosen, strict=True))
    assert {name: image.driver for name, image in chosen.items()} == PLANTED
    assert (selection.scored_images, selection.budget_used) == (35, 5)
    assert chosen["rare.png"].categories == ["forklift", "person"]
    assert chosen["near_threshold.png"].signals["detector_score"] == pytest.approx(0.8)
    # a reviewed image is left out unless asked for; then its uncertain mask wins
    widened = _sample(planted, tmp_path, include_reviewed=True, run_id=planted.run_id)
    assert _names(planted, [widened.chosen[0].storage_key]) == [REVIEWED]
    no_rarity = _sample(planted, tmp_path, budget=4, policy={"weights": SignalWeights(rarity=0)})
    assert set(_names(planted, [c.storage_key for c in no_rarity.chosen])) == set(PLANTED) - {
        "rare.png"
    }


def test_an_image_a_review_file_covered_is_not_sampled_again(tmp_path: Path) -> None:
    planted = make_planted_set(tmp_path)
    engine = make_engine(planted.database_url)
    with session_scope(engine) as session:
        dataset_id = find_dataset(session, name=planted.dataset)
        assert dataset_id is not None
        review = ReviewImport(dataset_id=dataset_id, tool="cvat", source="x", sha256="0" * 64)
        session.add(review)
        session.flush()
        image_id = image_ids_by_key(
            session, dataset_id=dataset_id, storage_keys=[planted.key("low_iou.png")]
        )[planted.key("low_iou.png")]
        session.add(ReviewedImage(import_id=review.id, image_id=image_id))
    engine.dispose()
    chosen = _names(planted, [c.storage_key for c in _sample(planted, tmp_path).chosen])
    assert "low_iou.png" not in chosen
    assert len(chosen) == 5  # a confident image takes its place
    widened = _sample(planted, tmp_path, include_reviewed=True)
    assert "low_iou.png" in _names(planted, [c.storage_key for c in widened.chosen])


def test_a_selection_round_trips_and_exports_exactly_its_images(
    planted: PlantedSet, tmp_path: Path
) -> None:
    resources = planted.resources(tmp_path)
    selection = _sample(planted, tmp_path)
    path = save_selection(selection, str(tmp_path / "sel" / "selection.json"), resources)
    assert json.loads(Path(path).read_text())["format"] == "autolabel-review-selection/1"
    again = load_selection(path, resources)
    assert again == selection
    request = ReviewExportRequest(dataset=planted.dataset, format="fiftyone", output=str(tmp_path))
    result = export_selection(again, request, resources)
    assert (result.images, result.annotations) == (5, 10)
    labels = json.loads((tmp_path / "labels.json").read_text())
    data_map = json.loads((tmp_path / "data_map.json").read_text())
    exported = {data_map[image["file_name"]] for image in labels["images"]}
    assert exported == {str(Path(planted.key(name).removeprefix("file://"))) for name in PLANTED}
    assert {a["image_id"] for a in labels["annotations"]} == set(selection.image_ids)


def test_bad_selections_and_mismatches_fail_in_one_line(
    planted: PlantedSet, tmp_path: Path
) -> None:
    resources = planted.resources(tmp_path)
    with pytest.raises(StorageConfigError, match="expected an existing dataset, got 'nope'"):
        sample_for_review(SampleRequest(dataset="nope", policy=SamplingPolicy(budget=1)), resources)
    with pytest.raises(StorageConfigError, match="got run 999"):
        _sample(planted, tmp_path, run_id=999)
    with pytest.raises(StorageConfigError, match="cannot read the selection"):
        load_selection(str(tmp_path / "missing.json"), resources)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(FormatError, match="expected a review selection written by"):
        load_selection(str(tmp_path / "bad.json"), resources)
    selection = _sample(planted, tmp_path, budget=1, run_id=planted.run_id)
    other = ReviewExportRequest(dataset="other", format="cvat", output=str(tmp_path))
    with pytest.raises(StorageConfigError, match="expected a selection of dataset 'other'"):
        restrict_to_selection(other, selection)
    wrong_run = other.model_copy(update={"dataset": planted.dataset, "run_id": 77})
    with pytest.raises(StorageConfigError, match="expected the selection's run"):
        restrict_to_selection(wrong_run, selection)


def test_cli_samples_saves_and_exports(
    planted: PlantedSet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", planted.database_url.render_as_string())
    selection_file = tmp_path / "selection.json"
    args = ["sample-review", "--dataset", planted.dataset, "--budget", "5"]
    code, stdout, stderr = run_in_process([*args, "--output", str(selection_file)], capsys)
    assert code == 0, stderr
    assert f"chose 5 of 35 images of dataset '{planted.dataset}' (5 of 5 images)" in stdout
    assert "rarity" in stdout.splitlines()[1]
    out = tmp_path / "cvat"
    export = ["export-review", "--dataset", planted.dataset, "--format", "cvat"]
    code, stdout, stderr = run_in_process(
        [*export, "--output", str(out), "--images-from", str(selection_file)], capsys
    )
    assert code == 0, stderr
    assert "wrote 10 annotations of 5 images for cvat" in stdout
    coco = json.loads((out / "annotations" / "instances_default.json").read_text())
    assert sorted(image["file_name"] for image in coco["images"]) == sorted(PLANTED)
    for bad, message in [
        (["--weights", "iou=2"], "weights.iou: Extra inputs are not permitted"),
        (["--weights", "rarity"], "expected weights as name=value"),
        (["--unit", "masks"], "unit: Input should be 'images' or 'annotations'"),
        (["--export-format", "cvat"], "--export-format and --export-output go together"),
        (["--run", "77"], "got run 77"),
    ]:
        code, stdout, stderr = run_in_process([*args, *bad], capsys)
        assert code == 2, stderr
        assert stderr.strip().splitlines() == [
            f"autolabel: error: {stderr.split('error: ')[1].strip()}"
        ]
        assert message in stderr
