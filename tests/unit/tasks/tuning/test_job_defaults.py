"""Tuned thresholds as a job's defaults: they fill what the job does not set, change its work
key, and are left out on request or for COCO-box jobs."""

from pathlib import Path

from autolabel.models.detection import DetectionConfig
from autolabel.storage.config import S3Config
from autolabel.storage.db.category_thresholds import TunedThreshold, save_category_thresholds
from autolabel.storage.db.engine import make_engine, session_scope, upgrade_to_head
from autolabel.storage.db.repository import ensure_categories, get_or_create_dataset
from autolabel.tasks.labeling.job import LabelJob
from autolabel.tasks.resources import ResourceConfig, Resources
from autolabel.tasks.tuning.job_defaults import tuned_job, with_tuned_thresholds
from autolabel.tasks.tuning.thresholds import Thresholds


def job(**fields: object) -> LabelJob:
    values: dict[str, object] = {
        "source": "file:///data/images",
        "dataset": "ds",
        "prompts": "person . forklift . pallet",
    }
    values.update(fields)
    return LabelJob.model_validate(values)


def tuned(category: str, box: float, text: float) -> TunedThreshold:
    return TunedThreshold(
        category=category, box_threshold=box, text_threshold=text, metric="f1@0.5/mask"
    )


STORED = {
    "person": tuned("person", 0.4, 0.5),
    "forklift": tuned("forklift", 0.3, 0.2),
    "tree": tuned("tree", 0.9, 0.9),  # not prompted: ignored
}


def test_tuned_thresholds_fill_only_what_the_job_does_not_set() -> None:
    own = job(
        thresholds=DetectionConfig(
            category_box_thresholds={"person": 0.7}, category_text_thresholds={"pallet": 0.1}
        )
    )
    filled, used = with_tuned_thresholds(own, STORED)
    config = filled.thresholds
    assert dict(config.category_box_thresholds) == {"person": 0.7, "forklift": 0.3}
    assert dict(config.category_text_thresholds) == {"pallet": 0.1, "person": 0.5, "forklift": 0.2}
    assert used == {
        "person": Thresholds(box=0.7, text=0.5),
        "forklift": Thresholds(box=0.3, text=0.2),
    }
    key = {"detector_version": "d", "segmenter_version": "s"}
    assert filled.work_key(**key) != own.work_key(**key)
    assert filled.model_dump(mode="json")["thresholds"]["category_text_thresholds"]["person"] == 0.5
    # Applying again changes nothing: the job now sets them itself.
    again, used_again = with_tuned_thresholds(filled, STORED)
    assert again.work_key(**key) == filled.work_key(**key)
    assert used_again == {}


def test_opted_out_and_coco_box_jobs_are_left_as_they_are() -> None:
    plain = job(tuned_thresholds=False)
    assert with_tuned_thresholds(plain, STORED) == (plain, {})
    boxes = job(boxes_from="file:///data/boxes.json")
    assert with_tuned_thresholds(boxes, STORED) == (boxes, {})
    unset = job()
    assert with_tuned_thresholds(unset, {}) == (unset, {})


def test_tuned_job_reads_the_dataset_thresholds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        dataset = get_or_create_dataset(session, name="ds")
        ensure_categories(session, dataset_id=dataset, names=["person", "forklift"])
        save_category_thresholds(session, dataset_id=dataset, tuned=[STORED["forklift"]])
    engine.dispose()
    resources = Resources(
        ResourceConfig(database_url=engine.url, s3=S3Config(), weights_dir=tmp_path)
    )
    try:
        filled, used = tuned_job(job(), resources)
        assert used == {"forklift": Thresholds(box=0.3, text=0.2)}
        assert dict(filled.thresholds.category_box_thresholds) == {"forklift": 0.3}
        assert tuned_job(job(dataset="new"), resources) == (job(dataset="new"), {})
        assert tuned_job(job(tuned_thresholds=False), resources)[1] == {}
    finally:
        resources.close()
