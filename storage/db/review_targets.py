"""Find what a review file names in the dataset: its labels, its images, their sizes.

Used by `autolabel.storage.db.review_history.record_review` before it writes anything, so a
file that does not fit the dataset is refused whole with one line naming what was wrong.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autolabel.storage.db.tables import Category, Image
from autolabel.storage.errors import StorageError
from autolabel.storage.review_items import ReviewedImageItems


class ReviewImportError(StorageError, ValueError):
    """A review file that does not fit the dataset (unknown images or labels, other sizes)."""


def review_categories_by_name(
    session: Session, dataset_id: int, images: Iterable[ReviewedImageItems]
) -> dict[str, int]:
    ids = dict(
        session.execute(
            select(Category.name, Category.id).where(Category.dataset_id == dataset_id)
        ).all()
    )
    unknown = sorted({i.category for img in images for i in img.items} - ids.keys())
    if unknown:
        raise ReviewImportError(
            f"expected labels among the dataset's categories {sorted(ids)}, got {unknown[:5]}"
        )
    return ids


_Stored = tuple[int, int | None, int | None]  # id, height, width


def _stored_image(session: Session, dataset_id: int, image: ReviewedImageItems) -> _Stored | None:
    stmt = select(Image.id, Image.height, Image.width).where(Image.dataset_id == dataset_id)
    if image.image_id is not None:
        return _one(session.execute(stmt.where(Image.id == image.image_id)).first())
    key = image.image_key
    found = _one(session.execute(stmt.where(Image.storage_key == key)).first())
    if found is not None or not key or "://" in key:
        return found
    suffix = session.execute(stmt.where(Image.storage_key.endswith("/" + key)).limit(2)).all()
    return _one(suffix[0]) if len(suffix) == 1 else None


def _one(row: Any) -> _Stored | None:
    return None if row is None else (int(row[0]), row[1], row[2])


def resolve_review_images(
    session: Session, dataset_id: int, images: Sequence[ReviewedImageItems]
) -> list[int]:
    """Our ids of the file's images, in its order, each checked to hold masks of its size.

    Raises:
        ReviewImportError: An unknown image (by id, storage URL or unique file name), an image
            twice, or a mask of another size than its image.
    """
    stored = [_stored_image(session, dataset_id, image) for image in images]
    unknown = [
        img.image_key or str(img.image_id)
        for img, found in zip(images, stored, strict=True)
        if found is None
    ]
    if unknown:
        raise ReviewImportError(
            f"expected images of the dataset (by id, storage URL or unique file name), got "
            f"{len(unknown)} unknown: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}"
        )
    ids = [found[0] for found in stored if found is not None]
    duplicates = len(ids) - len(set(ids))
    if duplicates:
        raise ReviewImportError(f"expected each image reviewed once, got {duplicates} repeated")
    for image, found in zip(images, stored, strict=True):
        if found is not None:
            _check_sizes(image, *found)
    return ids


def _check_sizes(
    image: ReviewedImageItems, image_id: int, height: int | None, width: int | None
) -> None:
    if not height or not width:
        return  # never decoded: nothing to compare with
    for item in image.items:
        if list(item.rle["size"]) != [height, width]:
            raise ReviewImportError(
                f"expected masks of {image.image_key or image_id} at its size "
                f"{width}x{height}, got {item.rle['size'][1]}x{item.rle['size'][0]} "
                f"(item {item.item_key!r})"
            )
