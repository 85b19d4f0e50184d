"""Find what a review file names in the dataset: its labels, its images, their sizes.

Used by `autolabel.storage.db.review_history.record_review` before it writes anything, so a
file that does not fit the dataset is refused whole with one line naming what was wrong.
"""

from collections.abc import Iterable, Sequence

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


def _image_id(session: Session, dataset_id: int, image: ReviewedImageItems) -> int | None:
    stmt = select(Image.id).where(Image.dataset_id == dataset_id)
    if image.image_id is not None:
        return session.scalar(stmt.where(Image.id == image.image_id))
    key = image.image_key
    found = session.scalar(stmt.where(Image.storage_key == key))
    if found is not None or not key or "://" in key:
        return found
    suffix = session.scalars(stmt.where(Image.storage_key.endswith("/" + key)).limit(2)).all()
    return suffix[0] if len(suffix) == 1 else None


def resolve_review_images(
    session: Session, dataset_id: int, images: Sequence[ReviewedImageItems]
) -> list[int]:
    ids = [_image_id(session, dataset_id, image) for image in images]
    unknown = [
        img.image_key or str(img.image_id) for img, i in zip(images, ids, strict=True) if i is None
    ]
    if unknown:
        raise ReviewImportError(
            f"expected images of the dataset (by id, storage URL or unique file name), got "
            f"{len(unknown)} unknown: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}"
        )
    duplicates = len(ids) - len(set(ids))
    if duplicates:
        raise ReviewImportError(f"expected each image reviewed once, got {duplicates} repeated")
    return [i for i in ids if i is not None]


def check_review_sizes(image: ReviewedImageItems, image_id: int, session: Session) -> None:
    stored = session.execute(select(Image.height, Image.width).where(Image.id == image_id)).one()
    for item in image.items:
        if (
            stored.height
            and stored.width
            and list(item.rle["size"]) != [stored.height, stored.width]
        ):
            raise ReviewImportError(
                f"expected masks of {image.image_key or image_id} at its size "
                f"{stored.width}x{stored.height}, got {item.rle['size'][1]}x{item.rle['size'][0]} "
                f"(item {item.item_key!r})"
            )
