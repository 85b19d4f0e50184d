"""Record a review brought back from a review tool: decisions, corrected copies, history.

`record_review` matches each reviewed image's objects (`autolabel.storage.review_items`) with
the image's stored predictions and records one decision per item:

- an object that started as a prediction (the tool kept our id) or, failing that, overlaps an
  unmatched prediction of its category at `match_iou` or more, is that prediction's review:
  `accepted` when its category is the same and its mask IoU with the prediction (fitted to the
  image) is at least `same_iou`, else `corrected`;
- a prediction the image showed with no object left for it is `rejected`;
- any other object is `added`.

Nothing stored is overwritten: a corrected prediction keeps its row, marked `superseded`, and the
correction is a new annotation (work key `review`, accepted) that stands for it from then on; an
added object is a new accepted annotation. Each decision is an append-only `review_events` row
(who, when, which import, the tool's item id). A decision that is already the annotation's state
records nothing, so importing the same review again (the same file: caught by its sha256; a
re-export of it: every decision is already in place) changes nothing. Runs in the caller's
transaction; the caller commits once, so a failed import leaves nothing behind.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from autolabel.storage.db.annotation_shape import STORED_RLE
from autolabel.storage.db.base import utc_now
from autolabel.storage.db.review_targets import (
    resolve_review_images,
    review_categories_by_name,
)
from autolabel.storage.db.reviewed_labels import REVIEW_WORK_KEY
from autolabel.storage.db.tables import (
    Annotation,
    ReviewDecision,
    ReviewedImage,
    ReviewEvent,
    ReviewImport,
    ReviewStatus,
)
from autolabel.storage.mask_clip import fit_rle
from autolabel.storage.review_items import ReviewedImageItems, ReviewedItem
from autolabel.storage.rle import (
    Rle,
    decode_rle,
    mask_to_polygons,
    polygons_to_rle,
    rle_areas,
    rle_bboxes,
    rle_iou,
)

_VISIBLE = (ReviewStatus.UNREVIEWED, ReviewStatus.ACCEPTED)


@dataclass(slots=True)
class ReviewCounts:
    """What an import recorded (`unchanged`: decisions already in place)."""

    images: int = 0
    accepted: int = 0
    corrected: int = 0
    rejected: int = 0
    added: int = 0
    unchanged: int = 0
    skipped_items: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewSource:
    """Where a review came from: the tool, the file, its sha256, the default reviewer."""

    tool: str
    source: str
    sha256: str
    reviewer: str | None = None


@dataclass(slots=True)
class _Row:
    id: int
    category_id: int
    rle: Rle
    status: ReviewStatus
    work_key: str
    instance_index: int


class _ImageState:
    """One image's annotations and correction links, updated as decisions are recorded."""

    def __init__(self, session: Session, image_id: int) -> None:
        self.rows = {
            aid: _Row(aid, cid, rle, status, work_key, index)
            for aid, cid, rle, status, work_key, index in session.execute(
                select(
                    Annotation.id,
                    Annotation.category_id,
                    STORED_RLE,
                    Annotation.review_status,
                    Annotation.work_key,
                    Annotation.instance_index,
                ).where(Annotation.image_id == image_id)
            )
        }
        self.replaced_by = dict(
            session.execute(
                select(ReviewEvent.annotation_id, ReviewEvent.result_id)
                .where(
                    ReviewEvent.image_id == image_id,
                    ReviewEvent.decision == ReviewDecision.CORRECTED,
                )
                .order_by(ReviewEvent.id)
            ).all()
        )

    def current(self, annotation_id: int) -> int | None:
        """The annotation that now stands for `annotation_id` (following corrections)."""
        seen = set()
        while annotation_id in self.rows and annotation_id not in seen:
            seen.add(annotation_id)
            if self.rows[annotation_id].status is not ReviewStatus.SUPERSEDED:
                return annotation_id
            nxt = self.replaced_by.get(annotation_id)
            if nxt is None:
                return None
            annotation_id = nxt
        return None

    def next_review_index(self) -> int:
        used = [r.instance_index for r in self.rows.values() if r.work_key == REVIEW_WORK_KEY]
        return max(used, default=-1) + 1


def _similarity(stored: Rle, item: ReviewedItem) -> float:
    """Mask IoU of a reviewed item with a stored prediction (fitted to the item's size); for an
    item held as polygons, the better of that and the IoU with the prediction's own polygons."""
    height, width = (int(v) for v in item.rle["size"])
    fitted = fit_rle(stored, height=height, width=width)
    iou = rle_iou(fitted, item.rle)
    if item.outline and iou < 1.0:
        polygons = mask_to_polygons(decode_rle(fitted))
        if polygons:
            iou = max(iou, rle_iou(polygons_to_rle(polygons, height, width), item.rle))
    return iou


def _match(
    items: Sequence[ReviewedItem],
    state: _ImageState,
    shown: set[int],
    category_ids: dict[str, int],
    match_iou: float,
) -> tuple[dict[int, tuple[ReviewedItem, float]], list[ReviewedItem]]:
    """(prediction id -> its reviewed item and their mask IoU, objects that match no
    prediction)."""
    matched: dict[int, tuple[ReviewedItem, float]] = {}
    loose: list[ReviewedItem] = []
    for item in items:
        target = None if item.annotation_id is None else state.current(item.annotation_id)
        if target is None or target in matched:
            loose.append(item)
        else:
            matched[target] = (item, _similarity(state.rows[target].rle, item))
    added = []
    for item in loose:
        candidates = [
            (_similarity(state.rows[a].rle, item), a)
            for a in sorted(shown - matched.keys())
            if state.rows[a].category_id == category_ids[item.category]
        ]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= match_iou:
            matched[best[1]] = (item, best[0])
        else:
            added.append(item)
    return matched, added


@dataclass(frozen=True, slots=True)
class _Reviewed:
    """The image under review: what the file says of it, its id, its annotations."""

    image: ReviewedImageItems
    image_id: int
    state: _ImageState


class _Recorder:
    """Writes one import's decisions (new rows, status changes, events) in the caller's session."""

    def __init__(self, session: Session, dataset_id: int, import_id: int, same_iou: float) -> None:
        self.session, self.dataset_id, self.import_id = session, dataset_id, import_id
        self.same_iou = same_iou
        self.counts = ReviewCounts()

    def _event(
        self,
        at: _Reviewed,
        decision: ReviewDecision,
        annotation_id: int,
        result_id: int | None,
        item: ReviewedItem | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        setattr(self.counts, decision.value, getattr(self.counts, decision.value) + 1)
        self.session.add(
            ReviewEvent(
                import_id=self.import_id,
                dataset_id=self.dataset_id,
                image_id=at.image_id,
                annotation_id=annotation_id,
                result_id=result_id,
                decision=decision,
                reviewer=at.image.reviewer,
                reviewed_at=at.image.reviewed_at or utc_now(),
                item_key=None if item is None else item.item_key,
                details=details or {},
            )
        )

    def _new_row(self, at: _Reviewed, category_id: int, rle: Rle) -> int:
        x, y, w, h = (float(v) for v in rle_bboxes([rle])[0])
        row = Annotation(
            dataset_id=self.dataset_id,
            image_id=at.image_id,
            category_id=category_id,
            run_id=None,
            work_key=REVIEW_WORK_KEY,
            instance_index=at.state.next_review_index(),
            bbox_x=x,
            bbox_y=y,
            bbox_w=w,
            bbox_h=h,
            area=float(rle_areas([rle])[0]),
            iscrowd=False,
            seg_counts=rle["counts"],
            seg_height=int(rle["size"][0]),
            seg_width=int(rle["size"][1]),
            review_status=ReviewStatus.ACCEPTED,
        )
        self.session.add(row)
        self.session.flush()
        at.state.rows[row.id] = _Row(
            row.id, category_id, rle, ReviewStatus.ACCEPTED, REVIEW_WORK_KEY, row.instance_index
        )
        return row.id

    def _set_status(self, at: _Reviewed, annotation_id: int, status: ReviewStatus) -> None:
        self.session.execute(
            update(Annotation).where(Annotation.id == annotation_id).values(review_status=status)
        )
        at.state.rows[annotation_id].status = status

    def review_prediction(
        self, at: _Reviewed, target: int, item: ReviewedItem, category_id: int, iou: float
    ) -> None:
        """Accept `target` (kept as is: same label, mask IoU `iou` at least `same_iou`) or
        correct it (a new row stands for it)."""
        row = at.state.rows[target]
        if row.category_id == category_id and iou >= self.same_iou:
            if row.status is ReviewStatus.ACCEPTED:
                self.counts.unchanged += 1
                return
            self._set_status(at, target, ReviewStatus.ACCEPTED)
            self._event(at, ReviewDecision.ACCEPTED, target, target, item, {"iou": round(iou, 6)})
            return
        new_id = self._new_row(at, category_id, item.rle)
        self._set_status(at, target, ReviewStatus.SUPERSEDED)
        at.state.replaced_by[target] = new_id
        details = {"iou": round(iou, 6), "category_changed": row.category_id != category_id}
        self._event(at, ReviewDecision.CORRECTED, target, new_id, item, details)

    def reject(self, at: _Reviewed, target: int) -> None:
        """Mark `target` rejected."""
        self._set_status(at, target, ReviewStatus.REJECTED)
        self._event(at, ReviewDecision.REJECTED, target, None)

    def add(self, at: _Reviewed, item: ReviewedItem, category_id: int) -> None:
        """Store a reviewer's new object, accepted."""
        new_id = self._new_row(at, category_id, item.rle)
        self._event(at, ReviewDecision.ADDED, new_id, new_id, item)


def record_review(
    session: Session,
    *,
    dataset_id: int,
    source: ReviewSource,
    images: Sequence[ReviewedImageItems],
    same_iou: float = 0.99,
    match_iou: float = 0.5,
) -> tuple[int, ReviewCounts, bool]:
    """Record a review of the dataset (see the module docstring).

    Args:
        session: Caller's session (commit after; nothing is committed here).
        dataset_id: The dataset reviewed.
        source: The tool, file and its sha256, default reviewer.
        images: The reviewed images with the objects each holds.
        same_iou: Mask IoU from which a kept object counts as unchanged.
        match_iou: Mask IoU from which an object without our id is taken for a prediction.

    Returns:
        (import id, counts, whether this file had been imported before: then nothing changed).

    Raises:
        ReviewImportError: Unknown images or labels, an image twice, a mask of another size.
    """
    previous = session.scalars(
        select(ReviewImport).where(
            ReviewImport.dataset_id == dataset_id, ReviewImport.sha256 == source.sha256
        )
    ).first()
    if previous is not None:
        return previous.id, ReviewCounts(**previous.counts), True
    category_ids = review_categories_by_name(session, dataset_id, images)
    image_ids = resolve_review_images(session, dataset_id, images)
    row = ReviewImport(dataset_id=dataset_id, **asdict(source))
    session.add(row)
    session.flush()
    recorder = _Recorder(session, dataset_id, row.id, same_iou)
    for image, image_id in zip(images, image_ids, strict=True):
        image = _with_reviewer(image, source.reviewer)
        _record_image(session, recorder, image, image_id, category_ids, match_iou)
    row.counts = asdict(recorder.counts)
    return row.id, recorder.counts, False


def _with_reviewer(image: ReviewedImageItems, default: str | None) -> ReviewedImageItems:
    if image.reviewer is not None or default is None:
        return image
    return replace(image, reviewer=default)


def _record_image(
    session: Session,
    recorder: _Recorder,
    image: ReviewedImageItems,
    image_id: int,
    category_ids: dict[str, int],
    match_iou: float,
) -> None:
    state = _ImageState(session, image_id)
    visible = {a for a, r in state.rows.items() if r.status in _VISIBLE}
    shown = visible
    if image.shown_ids is not None:
        current = (state.current(a) for a in image.shown_ids)
        shown = {a for a in current if a is not None} & visible
    # What the reviewer may have kept: what the tool showed, and the objects earlier reviews
    # made (a re-export of an older file still holds them); only shown ones can be rejected.
    made = {a for a in visible if state.rows[a].work_key == REVIEW_WORK_KEY}
    matched, added = _match(image.items, state, shown | made, category_ids, match_iou)
    at = _Reviewed(image, image_id, state)
    for target, (item, iou) in matched.items():
        recorder.review_prediction(at, target, item, category_ids[item.category], iou)
    for target in sorted(shown - matched.keys()):
        recorder.reject(at, target)
    for item in added:
        recorder.add(at, item, category_ids[item.category])
    recorder.counts.images += 1
    recorder.counts.skipped_items += len(image.skipped)
    session.add(
        ReviewedImage(
            import_id=recorder.import_id,
            image_id=image_id,
            reviewer=image.reviewer,
            reviewed_at=image.reviewed_at or utc_now(),
        )
    )
