"""Repository behaviour on SQLite (the PostgreSQL run imports these tests, see integration)."""

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from autolabel.storage.db.bulk import write_annotations, write_image_batch
from autolabel.storage.db.label_runs import create_label_run, refresh_run_counts
from autolabel.storage.db.model_versions import (
    archive_model_version,
    get_production_model,
    list_model_versions,
    promote_model_version,
    register_model_version,
)
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import (
    annotation_counts_by_category,
    delete_dataset,
    ensure_categories,
    get_or_create_dataset,
    image_status_counts,
    iter_pending_image_ids,
    register_images,
)
from autolabel.storage.db.tables import (
    Annotation,
    Image,
    ImageStatus,
    LabelRun,
    ModelStage,
    ModelVersion,
    ResultStatus,
)
from autolabel.storage.errors import ConflictError, TransientStorageError

WORK_KEY = "a" * 64


def _anns(image_id: int, category_id: int, n: int, offset: float = 0.0) -> tuple[AnnotationIn, ...]:
    return tuple(
        AnnotationIn(
            image_id=image_id,
            category_id=category_id,
            instance_index=i,
            bbox_xywh_px=(float(i) + offset, 0.0, 2.0, 2.0),
            area=4.0,
            seg_counts="04",
            seg_height=4,
            seg_width=4,
            score=0.5,
            phrase="cat",
        )
        for i in range(n)
    )


def _setup(session: Session, n_images: int = 3) -> tuple[int, int, dict[str, int]]:
    dataset_id = get_or_create_dataset(session, name="ds")
    cat = ensure_categories(session, dataset_id=dataset_id, names=["cat"])["cat"]
    ids = register_images(
        session,
        dataset_id=dataset_id,
        images=[ImageIn(storage_key=f"img/{i}.jpg", etag=f"e{i}") for i in range(n_images)],
    )
    return dataset_id, cat, ids


def _n_annotations(session: Session, image_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Annotation)
    if image_id is not None:
        stmt = stmt.where(Annotation.image_id == image_id)
    return session.execute(stmt).scalar_one()


def test_get_or_create_is_idempotent(session: Session) -> None:
    first = get_or_create_dataset(session, name="ds")
    assert get_or_create_dataset(session, name="ds") == first
    assert get_or_create_dataset(session, name="other") != first
    cats = ensure_categories(session, dataset_id=first, names={"cat": "animal", "dog": None})
    again = ensure_categories(session, dataset_id=first, names=["dog", "cat", "bird"])
    assert again["cat"] == cats["cat"]
    assert again["dog"] == cats["dog"]
    assert len(set(again.values())) == 3


def test_register_images_resets_status_only_on_etag_change(session: Session) -> None:
    dataset_id, _cat, ids = _setup(session)
    outcome = [ImageOutcome(image_id=ids["img/0.jpg"], etag="e0", status=ResultStatus.DONE)]
    run = create_label_run(session, dataset_id=dataset_id, work_key=WORK_KEY, parameters={})
    write_image_batch(
        session, dataset_id=dataset_id, run_id=run, work_key=WORK_KEY, outcomes=outcome
    )
    assert image_status_counts(session, dataset_id=dataset_id)[ImageStatus.DONE] == 1
    same = register_images(
        session, dataset_id=dataset_id, images=[ImageIn(storage_key="img/0.jpg", etag="e0")]
    )
    assert same == {"img/0.jpg": ids["img/0.jpg"]}
    assert image_status_counts(session, dataset_id=dataset_id)[ImageStatus.DONE] == 1
    register_images(
        session, dataset_id=dataset_id, images=[ImageIn(storage_key="img/0.jpg", etag="new")]
    )
    counts = image_status_counts(session, dataset_id=dataset_id)
    assert counts == {ImageStatus.PENDING: 3, ImageStatus.DONE: 0, ImageStatus.FAILED: 0}


def test_pending_selection_by_work_key_and_etag(session: Session) -> None:
    dataset_id, _cat, ids = _setup(session, n_images=5)
    all_ids = sorted(ids.values())
    batches = list(
        iter_pending_image_ids(session, dataset_id=dataset_id, work_key=WORK_KEY, batch_size=2)
    )
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b] == all_ids
    outcomes = [
        ImageOutcome(image_id=all_ids[0], etag="e0", status=ResultStatus.DONE),
        ImageOutcome(
            image_id=all_ids[1], etag="e1", status=ResultStatus.FAILED, failure_reason="x"
        ),
    ]
    write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=outcomes
    )

    def pending(**kw: object) -> list[int]:
        batches = iter_pending_image_ids(session, dataset_id=dataset_id, **kw)  # type: ignore[arg-type]
        return [i for b in batches for i in b]

    assert pending(work_key=WORK_KEY) == all_ids[1:]
    assert pending(work_key=WORK_KEY, retry_failed=False) == all_ids[2:]
    assert pending(work_key="b" * 64) == all_ids
    register_images(
        session, dataset_id=dataset_id, images=[ImageIn(storage_key="img/0.jpg", etag="z")]
    )
    assert pending(work_key=WORK_KEY) == all_ids


def test_retried_batch_writes_no_duplicates(session: Session) -> None:
    dataset_id, cat, ids = _setup(session)
    run = create_label_run(session, dataset_id=dataset_id, work_key=WORK_KEY, parameters={"t": 0.3})
    outcomes = [
        ImageOutcome(
            image_id=iid, etag=f"e{i}", status=ResultStatus.DONE, annotations=_anns(iid, cat, 4)
        )
        for i, iid in enumerate(sorted(ids.values()))
    ]
    first = write_image_batch(
        session, dataset_id=dataset_id, run_id=run, work_key=WORK_KEY, outcomes=outcomes
    )
    second = write_image_batch(
        session, dataset_id=dataset_id, run_id=run, work_key=WORK_KEY, outcomes=outcomes
    )
    assert first.annotations_inserted == 12
    assert second.annotations_inserted == 0
    assert second.images_replaced == 0
    assert _n_annotations(session) == 12
    refresh_run_counts(session, run_id=run, images_skipped=7)
    session.expire_all()
    row = session.get_one(LabelRun, run)
    assert (row.images_done, row.images_failed, row.images_skipped, row.annotations) == (
        3,
        0,
        7,
        12,
    )
    assert annotation_counts_by_category(session, dataset_id=dataset_id) == {"cat": 12}


def test_reprocessed_image_replaces_its_annotations(session: Session) -> None:
    dataset_id, cat, ids = _setup(session, n_images=2)
    a, b = sorted(ids.values())
    outcomes = [
        ImageOutcome(image_id=a, etag="e0", status=ResultStatus.DONE, annotations=_anns(a, cat, 5)),
        ImageOutcome(image_id=b, etag="e1", status=ResultStatus.DONE, annotations=_anns(b, cat, 2)),
    ]
    write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=outcomes
    )
    register_images(
        session, dataset_id=dataset_id, images=[ImageIn(storage_key="img/0.jpg", etag="v2")]
    )
    redo = [
        ImageOutcome(
            image_id=a,
            etag="v2",
            status=ResultStatus.DONE,
            annotations=_anns(a, cat, 3, offset=9.0),
        )
    ]
    stats = write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=redo
    )
    assert stats.images_replaced == 1
    assert stats.annotations_inserted == 3
    assert _n_annotations(session, a) == 3
    assert _n_annotations(session, b) == 2
    xs = session.execute(select(Annotation.bbox_x).where(Annotation.image_id == a)).scalars()
    assert sorted(xs) == [9.0, 10.0, 11.0]
    failed = [ImageOutcome(image_id=b, etag="e9", status=ResultStatus.FAILED, failure_reason="t")]
    write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=failed
    )
    assert _n_annotations(session, b) == 0


def test_model_promotion_rules(session: Session) -> None:
    first = register_model_version(
        session,
        name="sam-l0-v1",
        variant="efficientvit-sam-l0",
        sha256="1" * 64,
        storage_uri="s3://m/1",
    )
    assert first.stage is ModelStage.CANDIDATE
    again = register_model_version(
        session,
        name="sam-l0-v1",
        variant="efficientvit-sam-l0",
        sha256="1" * 64,
        storage_uri="s3://m/1",
    )
    assert again.id == first.id
    with pytest.raises(ConflictError, match="sam-l0-v1"):
        register_model_version(
            session,
            name="sam-l0-v1",
            variant="efficientvit-sam-l0",
            sha256="2" * 64,
            storage_uri="x",
        )
    register_model_version(
        session, name="sam-l0-v2", variant="efficientvit-sam-l0", sha256="2" * 64, storage_uri="x"
    )
    register_model_version(
        session, name="sam-l1-v1", variant="efficientvit-sam-l1", sha256="3" * 64, storage_uri="y"
    )
    assert get_production_model(session, variant="efficientvit-sam-l0") is None
    promote_model_version(session, name="sam-l0-v1")
    promote_model_version(session, name="sam-l1-v1")
    promoted = promote_model_version(session, name="sam-l0-v2")
    assert promoted.stage is ModelStage.PRODUCTION
    assert promoted.promoted_at is not None
    assert get_production_model(session, variant="efficientvit-sam-l0") == promoted
    stages = {m.name: m.stage for m in list_model_versions(session)}
    assert stages == {
        "sam-l0-v1": ModelStage.ARCHIVED,
        "sam-l0-v2": ModelStage.PRODUCTION,
        "sam-l1-v1": ModelStage.PRODUCTION,
    }
    with pytest.raises(ConflictError, match="archived"):
        promote_model_version(session, name="sam-l0-v1")
    with pytest.raises(LookupError, match="nope"):
        promote_model_version(session, name="nope")
    archive_model_version(session, name="sam-l1-v1")
    assert get_production_model(session, variant="efficientvit-sam-l1") is None


def test_partial_unique_index_rejects_second_production(session: Session) -> None:
    for i in range(2):
        session.add(
            ModelVersion(
                name=f"m{i}", variant="v", sha256="0" * 64, storage_uri="u", metrics={},
                stage=ModelStage.PRODUCTION,
            )
        )  # fmt: skip
    with pytest.raises(IntegrityError):
        session.flush()


def test_annotations_must_reference_their_own_dataset(session: Session) -> None:
    dataset_id, cat, ids = _setup(session, n_images=1)
    other = get_or_create_dataset(session, name="other")
    other_cat = ensure_categories(session, dataset_id=other, names=["cat"])["cat"]
    image_id = ids["img/0.jpg"]
    with pytest.raises(ConflictError, match="category ids"):
        write_annotations(
            session, dataset_id=dataset_id, work_key=WORK_KEY, run_id=None,
            annotations=_anns(image_id, other_cat, 1),
        )  # fmt: skip
    with pytest.raises(ConflictError, match="image ids"):
        write_annotations(
            session, dataset_id=other, work_key=WORK_KEY, run_id=None,
            annotations=_anns(image_id, other_cat, 1),
        )  # fmt: skip
    other_run = create_label_run(session, dataset_id=other, work_key=WORK_KEY, parameters={})
    with pytest.raises(ConflictError, match="label run ids"):
        write_annotations(
            session, dataset_id=dataset_id, work_key=WORK_KEY, run_id=other_run,
            annotations=_anns(image_id, cat, 1),
        )  # fmt: skip
    assert _n_annotations(session) == 0


def test_plain_insert_of_an_existing_row_is_transient(session: Session) -> None:
    dataset_id, cat, ids = _setup(session, n_images=1)
    rows = _anns(ids["img/0.jpg"], cat, 2)
    kwargs = {"dataset_id": dataset_id, "work_key": WORK_KEY, "run_id": None, "annotations": rows}
    assert write_annotations(session, skip_existing=False, **kwargs) == 2  # type: ignore[arg-type]
    assert write_annotations(session, **kwargs) == 0  # type: ignore[arg-type]
    with pytest.raises(TransientStorageError, match="concurrently"):
        write_annotations(session, skip_existing=False, **kwargs)  # type: ignore[arg-type]


def test_delete_dataset_removes_its_annotations_only(session: Session) -> None:
    dataset_id, cat, ids = _setup(session, n_images=2)
    other_id, other_cat, other_ids = _setup_other(session)
    for ds, c, image_ids in ((dataset_id, cat, ids), (other_id, other_cat, other_ids)):
        outcomes = [
            ImageOutcome(
                image_id=i, etag=f"e{n}", status=ResultStatus.DONE, annotations=_anns(i, c, 3)
            )
            for n, i in enumerate(sorted(image_ids.values()))
        ]
        write_image_batch(session, dataset_id=ds, run_id=None, work_key=WORK_KEY, outcomes=outcomes)
    assert delete_dataset(session, dataset_id=dataset_id) == 6
    assert _n_annotations(session) == 3
    assert image_status_counts(session, dataset_id=dataset_id)[ImageStatus.DONE] == 0


def _setup_other(session: Session) -> tuple[int, int, dict[str, int]]:
    other = get_or_create_dataset(session, name="other")
    cat = ensure_categories(session, dataset_id=other, names=["dog"])["dog"]
    ids = register_images(
        session, dataset_id=other, images=[ImageIn(storage_key="o.jpg", etag="e0")]
    )
    return other, cat, ids


def test_outcomes_mirror_status_and_size_only_at_the_processed_etag(session: Session) -> None:
    dataset_id, _cat, ids = _setup(session, n_images=2)
    a, b = sorted(ids.values())
    outcomes = [
        ImageOutcome(image_id=a, etag="e0", status=ResultStatus.DONE, width=640, height=480),
        ImageOutcome(image_id=b, etag="stale", status=ResultStatus.FAILED, failure_reason="x"),
    ]
    write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=outcomes
    )
    session.expire_all()
    first, second = session.get_one(Image, a), session.get_one(Image, b)
    assert (first.status, first.width, first.height) == (ImageStatus.DONE, 640, 480)
    assert (second.status, second.failure_reason) == (ImageStatus.PENDING, None)


def test_numpy_scalars_are_stored_as_plain_numbers(session: Session) -> None:
    dataset_id, cat, ids = _setup(session, n_images=1)
    ann = AnnotationIn(
        image_id=np.int64(ids["img/0.jpg"]), category_id=np.int64(cat),  # type: ignore[arg-type]
        instance_index=np.int32(0), bbox_xywh_px=tuple(np.array([1.5, 2, 3, 4], np.float32)),  # type: ignore[arg-type]
        area=np.float32(12.0), seg_counts="04", seg_height=np.int64(4), seg_width=np.int64(4),  # type: ignore[arg-type]
        score=np.float32(0.25), predicted_iou=np.float64(0.5), stability_score=None,  # type: ignore[arg-type]
    )  # fmt: skip
    outcome = ImageOutcome(
        image_id=ids["img/0.jpg"], etag="e0", status=ResultStatus.DONE, annotations=(ann,),
        width=np.int64(8), height=np.int64(6),  # type: ignore[arg-type]
    )  # fmt: skip
    write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=[outcome]
    )
    row = session.execute(select(Annotation)).scalar_one()
    assert (row.bbox_x, row.area, row.score, row.predicted_iou) == (1.5, 12.0, 0.25, 0.5)
    assert row.stability_score is None
