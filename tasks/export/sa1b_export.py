"""The closed loop's first half: stored annotations -> SA-1B shards in object storage.

The flow then announces the shards (`autolabel.tasks.events.announce_sa1b`), which starts
retraining on them.
"""

import tempfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from posixpath import splitext

from pydantic import BaseModel, ConfigDict, Field

from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.sa1b import (
    Sa1bAnnotation,
    Sa1bImage,
    Sa1bRecord,
    Sa1bSample,
    write_shard,
)
from autolabel.tasks.resources import Resources


class Sa1bExportRequest(BaseModel):
    """Which annotations become training data, and where the shards go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1)
    output: str = Field(description="Store URL (folder) that receives sa_000000.tar, ...")
    run_id: int | None = None
    accepted_only: bool = Field(False, description="Only reviewer-accepted annotations.")
    images_per_shard: int = Field(100, ge=1, le=100_000)


class Sa1bExportResult(BaseModel):
    """The shards written."""

    url: str
    shards: list[str]
    images: int
    annotations: int


def _samples(
    request: Sa1bExportRequest, dataset_id: int, resources: Resources
) -> Iterator[Sa1bSample]:
    with session_scope(resources.engine) as session:
        for image_id, url, instances in queries.iter_images_with_annotations(
            session,
            dataset_id=dataset_id,
            run_id=request.run_id,
            accepted_only=request.accepted_only,
        ):
            store, key = resources.open_object(url)
            height, width = instances[0].rle["size"]
            annotations = tuple(
                Sa1bAnnotation(
                    id=a.annotation_id,
                    segmentation=a.rle,
                    bbox_xywh_px=a.bbox_xywh_px,
                    area=a.area,
                    predicted_iou=a.predicted_iou if a.predicted_iou is not None else 1.0,
                    stability_score=a.stability_score if a.stability_score is not None else 1.0,
                    point_coords=(_box_center(a.bbox_xywh_px),),
                    crop_box=(0.0, 0.0, float(width), float(height)),
                )
                for a in instances
            )
            image = Sa1bImage(
                image_id=image_id,
                width=width,
                height=height,
                file_name=f"sa_{image_id}{splitext(key)[1].lower() or '.jpg'}",
            )
            yield Sa1bSample(
                record=Sa1bRecord(image=image, annotations=annotations),
                image_bytes=store.get(key),
            )


def _box_center(box: tuple[float, float, float, float]) -> tuple[float, float]:
    x, y, w, h = box
    return (x + w / 2, y + h / 2)


def export_sa1b(request: Sa1bExportRequest, resources: Resources) -> Sa1bExportResult:
    """Write the dataset's annotated images as SA-1B tar shards under `request.output`."""
    with session_scope(resources.engine) as session:
        dataset_id = queries.require_dataset(session, name=request.dataset)
    store = resources.store(request.output)
    samples = _samples(request, dataset_id, resources)
    shards: list[str] = []
    images = annotations = 0
    with tempfile.TemporaryDirectory(prefix="autolabel-sa1b-") as tmp:
        while chunk := list(islice(samples, request.images_per_shard)):
            name = f"sa_{len(shards):06d}.tar"
            write_shard(Path(tmp) / name, chunk)
            store.put_file(name, Path(tmp) / name)
            shards.append(name)
            images += len(chunk)
            annotations += sum(len(s.record.annotations) for s in chunk)
    return Sa1bExportResult(
        url=request.output, shards=shards, images=images, annotations=annotations
    )
