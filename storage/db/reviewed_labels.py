"""What reviewers made of a dataset: the reviewed images and their reviewed labels.

An image is reviewed once a review import covered it (`reviewed_images`). Its reviewed labels
are its annotations whose review status is `accepted`: predictions a reviewer kept, the corrected
copies of predictions a reviewer changed, and the objects a reviewer added. Rejected and
superseded predictions are not labels; images never reviewed have none (their predictions are
unknown, not wrong). Threshold tuning, prompt comparison and the quality report compare
predictions with these. Read-only: the caller's session, never a commit.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from autolabel.storage.db.annotation_shape import BOX_XYWH_PX, STORED_RLE
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Image,
    ReviewedImage,
    ReviewStatus,
)
from autolabel.storage.rle import Rle

_CHUNK = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedLabel:
    """One reviewed label of an image.

    Attributes:
        annotation_id: Its annotation row.
        category_id: Database id of its category; `category` its name.
        bbox_xywh_px: Box (x, y, width, height), image pixels.
        rle: Compressed COCO RLE (column-major) as stored (its size may differ from the image's
            for a prediction stored at another size; `autolabel.storage.mask_clip.fit_mask`).
        added_by_review: Whether a reviewer drew or corrected it (not a kept prediction).
    """

    annotation_id: int
    category_id: int
    category: str
    bbox_xywh_px: tuple[float, float, float, float]
    rle: Rle
    added_by_review: bool


REVIEW_WORK_KEY = "review"
"""The `work_key` of annotations a review import created (corrected copies, added objects)."""


def reviewed_image_ids(
    session: Session, *, dataset_id: int, among: Sequence[int] | None = None
) -> list[int]:
    """Ids of the dataset's images that any review import covered (all, or those of `among`),
    ascending."""
    stmt = (
        select(ReviewedImage.image_id)
        .join(Image, Image.id == ReviewedImage.image_id)
        .where(Image.dataset_id == dataset_id)
        .distinct()
    )
    if among is None:
        return [int(i) for (i,) in session.execute(stmt.order_by(ReviewedImage.image_id))]
    ids, found = sorted(set(among)), set[int]()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.update(
            int(i) for (i,) in session.execute(stmt.where(ReviewedImage.image_id.in_(chunk)))
        )
    return sorted(found)


def reviewed_labels(
    session: Session, *, dataset_id: int, image_ids: Sequence[int] | None = None
) -> dict[int, list[ReviewedLabel]]:
    """The reviewed labels of the dataset's reviewed images (all, or those of `image_ids` that
    were reviewed): image id -> labels by annotation id; a reviewed image without labels maps
    to an empty list."""
    reviewed = reviewed_image_ids(session, dataset_id=dataset_id, among=image_ids)
    out: dict[int, list[ReviewedLabel]] = {i: [] for i in reviewed}
    for start in range(0, len(reviewed), _CHUNK):
        rows = session.execute(
            select(
                Annotation.id,
                Annotation.image_id,
                Annotation.category_id,
                Category.name,
                BOX_XYWH_PX,
                STORED_RLE,
                Annotation.work_key,
            )
            .join(Category, Category.id == Annotation.category_id)
            .where(
                Annotation.dataset_id == dataset_id,
                Annotation.image_id.in_(reviewed[start : start + _CHUNK]),
                Annotation.review_status == ReviewStatus.ACCEPTED,
            )
            .order_by(Annotation.image_id, Annotation.id)
        )
        for aid, image_id, cid, name, box, rle, work_key in rows:
            out[int(image_id)].append(
                ReviewedLabel(
                    annotation_id=int(aid),
                    category_id=int(cid),
                    category=name,
                    bbox_xywh_px=box,
                    rle=rle,
                    added_by_review=work_key == REVIEW_WORK_KEY,
                )
            )
    return out
