"""The review loop on PostgreSQL: a reviewed sample -> `autolabel tune-thresholds` -> thresholds
stored -> the next label run uses them; `autolabel compare-prompts` ranks phrasings.

The detector is the seeded random-weight `grounding-dino-test` (its scores are spread over
[0, 1] and the same in every run), so the test controls what "right" means: the first run labels
every candidate (thresholds 0), and the reviewer accepts exactly the annotations scored >= 0.9
and rejects the rest. Re-run at the floor, the same candidates come back with the same masks, so
tuning must raise the text threshold to the 0.90 grid point and F1 must rise.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from autolabel.flows.label_dataset import autolabel_dataset
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Dataset,
    Image,
    LabelRun,
    ReviewedImage,
    ReviewImport,
    ReviewStatus,
)
from autolabel.tasks.labeling.job import LabelJob
from tests.cli_runner import run_in_process
from tests.corpus import write_good_images
from tests.integration.flows.conftest import FlowEnv
from tests.integration.flows.test_label_flow import make_job

pytestmark = pytest.mark.integration

ACCEPT_FROM = 0.9
DATASET = "tuned"


def review(env: FlowEnv, dataset: str, accept_from: float = ACCEPT_FROM) -> dict[str, int]:
    """A reviewer covers every image: annotations scored >= `accept_from` are accepted, the
    others rejected. Returns the accepted count per category."""
    engine = create_engine(env.database_url)
    try:
        with Session(engine) as session, session.begin():
            dataset_id = session.scalars(select(Dataset.id).where(Dataset.name == dataset)).one()
            imported = ReviewImport(
                dataset_id=dataset_id, tool="cvat", source="test", sha256="0" * 64
            )
            session.add(imported)
            session.flush()
            images = session.scalars(select(Image.id).where(Image.dataset_id == dataset_id))
            session.add_all(ReviewedImage(import_id=imported.id, image_id=i) for i in images)
            for status, chosen in (
                (ReviewStatus.ACCEPTED, Annotation.score >= accept_from),
                (ReviewStatus.REJECTED, Annotation.score < accept_from),
            ):
                session.execute(
                    update(Annotation)
                    .where(Annotation.dataset_id == dataset_id, chosen)
                    .values(review_status=status)
                )
            counts = session.execute(
                select(Category.name, func.count())
                .join(Annotation, Annotation.category_id == Category.id)
                .where(
                    Annotation.dataset_id == dataset_id,
                    Annotation.review_status == ReviewStatus.ACCEPTED,
                )
                .group_by(Category.name)
            ).all()
        return {str(name): int(n) for name, n in counts}
    finally:
        engine.dispose()


def run_parameters(env: FlowEnv, run_id: int) -> tuple[dict[str, object], str]:
    engine = create_engine(env.database_url)
    try:
        with Session(engine) as session:
            run = session.get(LabelRun, run_id)
            assert run is not None
            return dict(run.parameters["thresholds"]), run.work_key
    finally:
        engine.dispose()


def first_job(env: FlowEnv, **overrides: object) -> LabelJob:
    fields: dict[str, object] = {
        "thresholds": {"box_threshold": 0.0, "text_threshold": 0.0, "max_detections": 30}
    }
    fields.update(overrides)
    return make_job(env, DATASET, **fields)


@pytest.mark.timeout(600)
def test_tuned_thresholds_are_stored_and_used_by_the_next_run(
    flow_env: FlowEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_good_images(tmp_path / "imgs", 2, np.random.default_rng(3), max_side=160)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    first = autolabel_dataset(first_job(flow_env))
    assert first.status == "completed"
    accepted = review(flow_env, DATASET)
    assert set(accepted) == {"box", "disc"}

    report_path = tmp_path / "report.json"
    code, out, err = run_in_process(
        ["tune-thresholds", "--dataset", DATASET, "--json", str(report_path)], capsys
    )
    assert code == 0, err
    assert "stored tuned thresholds of 2 categories" in out
    report = json.loads(report_path.read_text())
    assert report["stored"] is True
    assert report["run_id"] == first.run_id
    assert report["images"] == 2
    assert report["match_by"] == "mask"
    tuned = {c["category"]: c for c in report["categories"]}
    for name, count in accepted.items():
        category = tuned[name]
        assert category["labels"] == count
        assert category["before_thresholds"] == {"box": 0.0, "text": 0.0}
        assert category["after_thresholds"]["text"] == pytest.approx(ACCEPT_FROM)
        assert category["before"]["f1"] < category["after"]["f1"]
        assert category["after"]["tp"] == count

    # The next run of the same job takes the stored thresholds: in its parameters and work key.
    second = autolabel_dataset(first_job(flow_env))
    thresholds, second_key = run_parameters(flow_env, second.run_id)
    for name, category in tuned.items():
        assert thresholds["category_text_thresholds"][name] == category["after_thresholds"]["text"]
        assert thresholds["category_box_thresholds"][name] == category["after_thresholds"]["box"]
    _, first_key = run_parameters(flow_env, first.run_id)
    assert second_key != first_key
    assert second.images_done == 2  # other thresholds: the images are labeled again
    # ... unless the job opts out: then it is the first job again (nothing left to label).
    third = autolabel_dataset(first_job(flow_env, tuned_thresholds=False))
    thresholds, third_key = run_parameters(flow_env, third.run_id)
    assert thresholds["category_text_thresholds"] == {}
    assert third_key == first_key
    assert third.images_skipped == 2


@pytest.mark.timeout(600)
def test_compare_prompts_ranks_phrasings_and_bad_input_is_one_line(
    flow_env: FlowEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_good_images(tmp_path / "imgs", 2, np.random.default_rng(4), max_side=160)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    unreviewed = autolabel_dataset(make_job(flow_env, DATASET))  # 3 boxes per image
    args = ["--dataset", DATASET, "--category", "box"]
    code, _, err = run_in_process(["compare-prompts", *args, "--phrasing", "box"], capsys)
    assert code == 2
    assert err == (
        f"autolabel: error: dataset {DATASET!r} has no reviewed images; import a review first\n"
    )
    accepted = review(flow_env, DATASET, accept_from=0.0)
    category = max(accepted, key=lambda name: accepted[name])
    args = ["--dataset", DATASET, "--category", category]

    ranking_path = tmp_path / "ranking.json"
    phrasings = ["--phrasing", category, "--phrasing", f"large {category}", "--match-by", "box"]
    code, out, err = run_in_process(
        ["compare-prompts", *args, *phrasings, "--json", str(ranking_path)], capsys
    )
    assert code == 0, err
    ranking = json.loads(ranking_path.read_text())
    assert ranking["run_id"] == unreviewed.run_id
    assert ranking["labels"] == accepted[category]
    results = ranking["results"]
    assert sorted(r["phrasing"] for r in results) == sorted([category, f"large {category}"])
    assert results[0]["score"]["f1"] >= results[1]["score"]["f1"]
    assert f"best: {results[0]['phrasing']!r}" in out

    bad = {
        ("compare-prompts", *args[:2], "--category", "tree", "--phrasing", "a"): "category",
        ("compare-prompts", *args, "--phrasing", "a . b"): "phrasings",
        ("tune-thresholds", "--dataset", "nope"): "existing dataset",
        ("tune-thresholds", "--dataset", DATASET, "--metric", "map"): "metric",
        ("tune-thresholds", "--dataset", DATASET, "--run", "999"): "run 999",
    }
    for command, word in bad.items():
        code, _, err = run_in_process(list(command), capsys)
        assert code == 2, err
        assert err.startswith("autolabel: error: ")
        assert word in err
        assert err.count("\n") == 1
