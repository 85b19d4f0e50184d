"""Bring a review back: a review tool's export -> decisions and history in the database.

Reads the file (a local path, `file://` or `s3://` URL), parses it with the tool's reader, and
records it in one transaction (`autolabel.storage.db.review_history.record_review`): every
prediction of a reviewed image is accepted, corrected (the correction stored beside it) or
rejected, every object the reviewer drew is added. A file imported before (same sha256) changes
nothing. Accepted labels are what `export-sa1b --accepted-only` selects; the `import-review` flow
can write them as SA-1B shards and announce them to retraining.
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autolabel.storage.cvat_xml import reviewed_cvat_xml
from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.review_history import ReviewCounts, ReviewSource, record_review
from autolabel.storage.db.review_targets import ReviewImportError
from autolabel.storage.errors import FormatError
from autolabel.storage.label_studio import reviewed_tasks
from autolabel.storage.review_coco import reviewed_coco
from autolabel.storage.review_items import ReviewedImageItems, ReviewTool
from autolabel.storage.urls import is_url
from autolabel.tasks.resources import Resources


class ReviewImportRequest(BaseModel):
    """A review file to bring back, and how to match it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, description="Dataset the review belongs to.")
    format: ReviewTool = Field(
        description="label-studio (JSON export), cvat (COCO 1.0 export), cvat-xml (CVAT for "
        "images 1.1 XML) or fiftyone (COCO detection export of the reviewed field)."
    )
    input: str = Field(min_length=1, description="The file: local path, file:// or s3:// URL.")
    reviewer: str | None = Field(
        None, max_length=200, description="Reviewer recorded where the file names none."
    )
    same_iou: float = Field(
        0.99, gt=0.0, le=1.0, description="Mask IoU from which a kept object is unchanged."
    )
    match_iou: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Mask IoU from which an object without our id is "
        "taken for the prediction it overlaps.",
    )


class ReviewImportResult(BaseModel):
    """What the import recorded."""

    dataset: str
    source: str
    sha256: str
    import_id: int
    already_imported: bool = Field(description="The same file was imported before: no change.")
    images: int
    accepted: int
    corrected: int
    rejected: int
    added: int
    unchanged: int
    skipped_items: int
    seconds: float

    @property
    def accepted_labels(self) -> int:
        """Labels this import made accepted (kept, corrected and added objects)."""
        return self.accepted + self.corrected + self.added


def _read(source: str, resources: Resources) -> bytes:
    if is_url(source):
        store, key = resources.open_object(source)
        return store.get(key)
    path = Path(source)
    if not path.is_file():
        raise ReviewImportError(f"expected a review file, got {source!r} (no such file)")
    return path.read_bytes()


def parse_review(data: bytes, tool: ReviewTool) -> list[ReviewedImageItems]:
    """The reviewed images of a review file of `tool`.

    Raises:
        FormatError: Not JSON, or not the tool's export (the reason names the item).
    """
    if tool == "cvat-xml":
        return reviewed_cvat_xml(data)
    try:
        doc: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"expected a JSON {tool} export, got unreadable JSON: {exc}") from None
    return reviewed_tasks(doc) if tool == "label-studio" else reviewed_coco(doc)


def import_review(request: ReviewImportRequest, resources: Resources) -> ReviewImportResult:
    """Record the review in `request.input` (see the module docstring).

    Raises:
        ReviewImportError: No such file or dataset, or a file that does not fit the dataset.
        FormatError: A file that is not the tool's export.
    """
    started = time.perf_counter()
    data = _read(request.input, resources)
    sha256 = hashlib.sha256(data).hexdigest()
    images = parse_review(data, request.format)
    source = ReviewSource(
        tool=request.format, source=request.input, sha256=sha256, reviewer=request.reviewer
    )
    with session_scope(resources.engine) as session:
        dataset_id = queries.find_dataset(session, name=request.dataset)
        if dataset_id is None:
            raise ReviewImportError(f"expected an existing dataset, got {request.dataset!r}")
        import_id, counts, before = record_review(
            session,
            dataset_id=dataset_id,
            source=source,
            images=images,
            same_iou=request.same_iou,
            match_iou=request.match_iou,
        )
    return _result(request, sha256, import_id, counts, before, time.perf_counter() - started)


def _result(
    request: ReviewImportRequest,
    sha256: str,
    import_id: int,
    counts: ReviewCounts,
    before: bool,
    seconds: float,
) -> ReviewImportResult:
    return ReviewImportResult(
        dataset=request.dataset,
        source=request.input,
        sha256=sha256,
        import_id=import_id,
        already_imported=before,
        images=counts.images,
        accepted=counts.accepted,
        corrected=counts.corrected,
        rejected=counts.rejected,
        added=counts.added,
        unchanged=counts.unchanged,
        skipped_items=counts.skipped_items,
        seconds=round(seconds, 3),
    )
