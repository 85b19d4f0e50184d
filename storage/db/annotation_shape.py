"""An annotation's stored box and mask, each read as one select item.

The box is four columns and the mask three (compressed counts, height, width); every reader of
annotations wants them back as a box tuple and an `Rle`. `BOX_XYWH_PX` and `STORED_RLE` are
SQLAlchemy bundles that select those columns and hand back the ready value, so a query names
`select(Annotation.id, BOX_XYWH_PX, STORED_RLE, ...)` and unpacks `(aid, box, rle, ...)`:

    for aid, box, rle in session.execute(select(Annotation.id, BOX_XYWH_PX, STORED_RLE)):
        ...  # box: (x, y, width, height) in image pixels; rle: {"size": [h, w], "counts": ...}
"""

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row, Select
from sqlalchemy.orm import Bundle

from autolabel.storage.db.tables import Annotation
from autolabel.storage.rle import Rle

BoxXywh = tuple[float, float, float, float]
_Proc = Callable[[Row[Any]], Any]


class _BoxBundle(Bundle[BoxXywh]):
    """The four box columns as one (x, y, width, height) tuple, image pixels."""

    def create_row_processor(
        self, query: Select[Any], procs: Sequence[_Proc], labels: Sequence[str]
    ) -> Callable[[Row[Any]], BoxXywh]:
        del query, labels
        x, y, w, h = procs
        return lambda row: (x(row), y(row), w(row), h(row))


class _RleBundle(Bundle[Rle]):
    """The three mask columns as one compressed COCO `Rle` of size [height, width]."""

    def create_row_processor(
        self, query: Select[Any], procs: Sequence[_Proc], labels: Sequence[str]
    ) -> Callable[[Row[Any]], Rle]:
        del query, labels
        counts, height, width = procs
        return lambda row: Rle(size=[height(row), width(row)], counts=counts(row))


BOX_XYWH_PX = _BoxBundle(
    "bbox_xywh_px", Annotation.bbox_x, Annotation.bbox_y, Annotation.bbox_w, Annotation.bbox_h
)
"""Select item: the annotation's box (x, y, width, height) in image pixels."""

STORED_RLE = _RleBundle("rle", Annotation.seg_counts, Annotation.seg_height, Annotation.seg_width)
"""Select item: the annotation's mask as stored (compressed COCO RLE, column-major)."""
