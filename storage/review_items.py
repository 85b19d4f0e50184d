"""A review brought back from a review tool, in one shape whatever the tool.

The readers (`autolabel.storage.label_studio.reviewed_tasks`,
`autolabel.storage.review_coco.reviewed_coco`, `autolabel.storage.cvat_xml.reviewed_cvat_xml`)
turn a tool's export into `ReviewedImageItems`; `autolabel.storage.db.review_history` matches
them with the stored predictions.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from autolabel.storage.rle import Rle

ReviewTool = Literal["label-studio", "cvat", "cvat-xml", "fiftyone"]
REVIEW_TOOLS: tuple[ReviewTool, ...] = ("label-studio", "cvat", "cvat-xml", "fiftyone")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedItem:
    """One object as the reviewer left it.

    Attributes:
        annotation_id: Our annotation id when the tool kept it (the item started as that
            prediction); None for an object the reviewer drew.
        category: Label name.
        rle: The mask at the image's size (compressed COCO RLE, column-major).
        item_key: The tool's own id of the item (region id, annotation id), for the history.
        outline: The tool held it as polygons (an unchanged prediction then equals the
            prediction's polygons, not its pixels).
    """

    annotation_id: int | None
    category: str
    rle: Rle
    item_key: str
    outline: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedImageItems:
    """One image the reviewer finished, with every object it now holds.

    Attributes:
        image_id: Our image id when the export carried it; None to match by `image_key`.
        image_key: Storage URL, or file name relative to the dataset's image root.
        width: Image width in pixels; `height` its height.
        items: The objects the image holds after review.
        shown_ids: Our annotation ids the tool showed for this image, when the file says
            (Label Studio's predictions); None: every prediction visible in an export.
        reviewer: Who reviewed it, when the file says.
        reviewed_at: When, when the file says.
    """

    image_id: int | None
    image_key: str
    width: int
    height: int
    items: Sequence[ReviewedItem]
    shown_ids: frozenset[int] | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    skipped: Sequence[str] = field(default_factory=tuple)
