"""Read-only queries for running jobs, run listings, dry runs and export overlays.

Like the repository functions, they take the caller's `Session`, are keyword-only and never commit.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from autolabel.storage.db.annotation_shape import BOX_XYWH_PX, STORED_RLE
from autolabel.storage.db.current_labels import is_current_label
from autolabel.storage.db.tables import (
    HIDDEN_REVIEW_STATUSES,
    Annotation,
    Category,
    Dataset,
    Image,
    ImageResult,
    LabelRun,
    ResultStatus,
    ReviewStatus,
)
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.rle import Rle

_CHUNK = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelRunInfo:
    """A label run as listed to users."""

    id: int
    dataset: str
    status: str
    work_key: str
    detector_model: str | None
    segmenter_model: str | None
    images_done: int
    images_failed: int
    images_skipped: int
    annotations: int
    started_at: datetime
    finished_at: datetime | None
    status_reason: str | None = None
    heartbeat_at: datetime | None = None
    owner: str | None = None
    runtimes: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def runtime_names(self, model: str) -> str:
        """The runtimes `model` ran in (its workers' distinct choices), e.g. "openvino-bf16"."""
        return ", ".join(choice["runtime"] for choice in self.runtimes.get(model, [])) or "-"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageAnnotation:
    """One stored instance of an image, enough to draw it."""

    category: str
    bbox_xywh_px: tuple[float, float, float, float]
    rle: Rle
    score: float | None


def find_dataset(session: Session, *, name: str) -> int | None:
    """Id of the dataset called `name`, or None."""
    return session.execute(select(Dataset.id).where(Dataset.name == name)).scalar_one_or_none()


def require_dataset(session: Session, *, name: str, run_id: int | None = None) -> int:
    """Id of the dataset called `name`, after checking that label run `run_id` (when given) is
    one of its runs.

    Raises:
        StorageConfigError: No such dataset, or no such run of it (a one-line message).
    """
    dataset_id = find_dataset(session, name=name)
    if dataset_id is None:
        raise StorageConfigError(f"expected an existing dataset, got {name!r}")
    if run_id is not None:
        run_dataset = session.execute(
            select(LabelRun.dataset_id).where(LabelRun.id == run_id)
        ).scalar_one_or_none()
        if run_dataset != dataset_id:
            raise StorageConfigError(f"expected a label run of dataset {name!r}, got run {run_id}")
    return dataset_id


def dataset_source_root(
    session: Session, *, dataset_id: int, run_id: int | None = None
) -> str | None:
    """The store URL the dataset's images were labeled from: the `source` parameter of `run_id`,
    or of the dataset's most recent label run that has one; None when no run names a source
    (e.g. a dataset filled only by COCO imports)."""
    stmt = select(LabelRun.parameters).where(LabelRun.dataset_id == dataset_id)
    if run_id is not None:
        stmt = stmt.where(LabelRun.id == run_id)
    for (parameters,) in session.execute(stmt.order_by(LabelRun.id.desc())):
        source = parameters.get("source") if isinstance(parameters, dict) else None
        if isinstance(source, str) and source:
            return source
    return None


def find_category(session: Session, *, dataset_id: int, name: str) -> int | None:
    """Id of the dataset's category called `name`, or None."""
    return session.execute(
        select(Category.id).where(Category.dataset_id == dataset_id, Category.name == name)
    ).scalar_one_or_none()


def image_ids_by_key(
    session: Session, *, dataset_id: int, storage_keys: Sequence[str]
) -> dict[str, int]:
    """storage_key -> id of the dataset's images among `storage_keys` (unknown ones absent)."""
    keys = sorted(set(storage_keys))
    found: dict[str, int] = {}
    for start in range(0, len(keys), _CHUNK):
        found.update(
            session.execute(
                select(Image.storage_key, Image.id).where(
                    Image.dataset_id == dataset_id,
                    Image.storage_key.in_(keys[start : start + _CHUNK]),
                )
            ).all()
        )
    return found


def image_refs(session: Session, *, image_ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(id, storage_key, etag) of the given images, in id order (missing ids are skipped)."""
    rows: list[tuple[int, str, str]] = []
    ids = sorted(set(image_ids))
    for start in range(0, len(ids), _CHUNK):
        rows.extend(
            (i, key, etag)
            for i, key, etag in session.execute(
                select(Image.id, Image.storage_key, Image.etag)
                .where(Image.id.in_(ids[start : start + _CHUNK]))
                .order_by(Image.id)
            )
        )
    return rows


def _run_info(run: LabelRun, dataset: str) -> LabelRunInfo:
    return LabelRunInfo(
        id=run.id,
        dataset=dataset,
        status=str(run.status.value),
        work_key=run.work_key,
        detector_model=run.detector_model,
        segmenter_model=run.segmenter_model,
        images_done=run.images_done,
        images_failed=run.images_failed,
        images_skipped=run.images_skipped,
        annotations=run.annotations,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status_reason=run.status_reason,
        heartbeat_at=run.heartbeat_at,
        owner=run.owner,
        runtimes=dict(run.runtimes or {}),
    )


def get_label_run(session: Session, *, run_id: int) -> LabelRunInfo:
    """One run; `LookupError` when it does not exist."""
    row = session.execute(
        select(LabelRun, Dataset.name)
        .join(Dataset, Dataset.id == LabelRun.dataset_id)
        .where(LabelRun.id == run_id)
    ).one_or_none()
    if row is None:
        raise LookupError(f"expected an existing label run id, got {run_id}")
    return _run_info(row[0], row[1])


def list_label_runs(
    session: Session, *, dataset: str | None = None, limit: int = 20
) -> list[LabelRunInfo]:
    """The most recent runs first, optionally of one dataset."""
    stmt = select(LabelRun, Dataset.name).join(Dataset, Dataset.id == LabelRun.dataset_id)
    if dataset is not None:
        stmt = stmt.where(Dataset.name == dataset)
    rows = session.execute(stmt.order_by(LabelRun.id.desc()).limit(limit))
    return [_run_info(run, name) for run, name in rows]


def done_storage_keys(
    session: Session, *, dataset_id: int, work_key: str, keys_etags: Sequence[tuple[str, str]]
) -> set[str]:
    """The storage keys among `keys_etags` already done under `work_key` at that etag."""
    done: set[str] = set()
    for start in range(0, len(keys_etags), _CHUNK):
        chunk = list(keys_etags[start : start + _CHUNK])
        done.update(
            session.execute(
                select(Image.storage_key)
                .join(ImageResult, ImageResult.image_id == Image.id)
                .where(
                    Image.dataset_id == dataset_id,
                    ImageResult.work_key == work_key,
                    ImageResult.status == ResultStatus.DONE,
                    tuple_(Image.storage_key, ImageResult.etag).in_(chunk),
                )
            ).scalars()
        )
    return done


def sample_annotated_images(
    session: Session, *, dataset_id: int, run_id: int | None, limit: int
) -> list[tuple[int, str]]:
    """Up to `limit` (image id, storage key) pairs that have annotations, lowest ids first."""
    with_annotations = select(Annotation.image_id).where(Annotation.dataset_id == dataset_id)
    if run_id is not None:
        with_annotations = with_annotations.where(Annotation.run_id == run_id)
    rows = session.execute(
        select(Image.id, Image.storage_key)
        .where(Image.id.in_(with_annotations.distinct()))
        .order_by(Image.id)
        .limit(limit)
    )
    return [(i, key) for i, key in rows]


def image_annotations(
    session: Session, *, image_id: int, run_id: int | None = None
) -> list[ImageAnnotation]:
    """Annotations of one image (of one run, when given), in instance order."""
    stmt = (
        select(Category.name, BOX_XYWH_PX, STORED_RLE, Annotation.score)
        .join(Category, Category.id == Annotation.category_id)
        .where(Annotation.image_id == image_id)
        .order_by(Annotation.id)
    )
    if run_id is not None:
        stmt = stmt.where(Annotation.run_id == run_id)
    return [
        ImageAnnotation(category=name, bbox_xywh_px=box, rle=rle, score=score)
        for name, box, rle, score in session.execute(stmt)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredInstance:
    """One stored annotation, as SA-1B export needs it."""

    annotation_id: int
    bbox_xywh_px: tuple[float, float, float, float]
    area: float
    rle: Rle
    predicted_iou: float | None
    stability_score: float | None


def iter_images_with_annotations(
    session: Session,
    *,
    dataset_id: int,
    run_id: int | None = None,
    accepted_only: bool = False,
    batch_size: int = 500,
) -> Iterator[tuple[int, str, list[StoredInstance]]]:
    """Stream (image id, storage key, instances) of annotated images, image by image.

    Dataset-wide, each image's current labels (`autolabel.storage.db.current_labels`); for a
    run, its annotations. Rejected and superseded annotations are always left out; with
    `accepted_only`, only reviewer-accepted ones are kept. Memory holds one page of images.
    """
    stmt = (
        select(
            Annotation.image_id,
            Image.storage_key,
            Annotation.id,
            BOX_XYWH_PX,
            Annotation.area,
            STORED_RLE,
            Annotation.predicted_iou,
            Annotation.stability_score,
        )
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Annotation.dataset_id == dataset_id,
            Annotation.review_status.not_in(HIDDEN_REVIEW_STATUSES),
        )
    )
    if run_id is not None:
        stmt = stmt.where(Annotation.run_id == run_id)
    if accepted_only:  # accepted annotations are always current labels
        stmt = stmt.where(Annotation.review_status == ReviewStatus.ACCEPTED)
    elif run_id is None:
        stmt = stmt.where(is_current_label(dataset_id))
    rows = session.execute(
        stmt.order_by(Annotation.image_id, Annotation.id),
        execution_options={"yield_per": batch_size},
    )
    current: tuple[int, str] | None = None
    instances: list[StoredInstance] = []
    for image_id, key, aid, box, area, rle, piou, stab in rows:
        if current is not None and current[0] != image_id:
            yield current[0], current[1], instances
            instances = []
        current = (image_id, key)
        instances.append(
            StoredInstance(
                annotation_id=aid,
                bbox_xywh_px=box,
                area=area,
                rle=rle,
                predicted_iou=piou,
                stability_score=stab,
            )
        )
    if current is not None:
        yield current[0], current[1], instances
