"""Which stored annotations are a dataset's labels now, when runs and reviews have piled up.

A dataset is labeled again when its prompts, thresholds or models change (a new work key): the
new run's predictions are stored beside the old ones, nothing is deleted. Every dataset-wide
reader (COCO, review and SA-1B exports, sampling, the quality report) takes, per image:

- the annotations a reviewer accepted, kept or drew (status `accepted`, whatever their run): a
  rerun never drops human work;
- on an image no review file covered, the unreviewed predictions of its current work key: the
  key of its latest `done` result at its current etag (so a rerun replaces the older predictions
  instead of adding to them, and an image whose content changed shows only the predictions made
  for its new content).

Rejected and superseded annotations are never labels. A run's own export (`--run`) is that run's
annotations instead. Both conditions are SQL expressions on `Annotation`, for the caller's query.
"""

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_

from autolabel.storage.db.tables import (
    Annotation,
    Image,
    ImageResult,
    ResultStatus,
    ReviewedImage,
    ReviewStatus,
)


def current_prediction_key(dataset_id: int) -> ColumnElement[bool]:
    """The annotation was made under its image's current work key (any review status)."""
    latest = (
        select(func.max(ImageResult.id))
        .join(Image, and_(Image.id == ImageResult.image_id, Image.etag == ImageResult.etag))
        .where(Image.dataset_id == dataset_id, ImageResult.status == ResultStatus.DONE)
        .group_by(ImageResult.image_id)
    )
    current = select(ImageResult.image_id, ImageResult.work_key).where(ImageResult.id.in_(latest))
    return tuple_(Annotation.image_id, Annotation.work_key).in_(current)


def is_current_label(dataset_id: int) -> ColumnElement[bool]:
    """The annotation is one of its image's labels now (see the module docstring)."""
    reviewed = select(ReviewedImage.id).where(ReviewedImage.image_id == Annotation.image_id)
    return or_(
        Annotation.review_status == ReviewStatus.ACCEPTED,
        and_(
            Annotation.review_status == ReviewStatus.UNREVIEWED,
            current_prediction_key(dataset_id),
            ~reviewed.exists(),
        ),
    )
