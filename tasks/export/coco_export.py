"""Export a dataset (or run) as COCO JSON, with PNG overlays of a few images beside it.

Images are named for review tools (CVAT, FiftyOne, Label Studio): `file_name` is relative to the
image root (`ExportRequest.image_root`, by default the dataset's source: the `source` of the
exported run, or of the dataset's most recent label run), an image stored elsewhere is named by
its URL without the scheme (`bucket/other/x.jpg`), and `coco_url` always holds the full storage
URL (`s3://bucket/raw/a.jpg`), which `import_coco` reads back.
"""

from pathlib import Path
from posixpath import splitext
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from autolabel.storage.db import queries
from autolabel.storage.db.coco_export import ExportFilter, unwritable, write_coco_json
from autolabel.storage.db.engine import session_scope
from autolabel.storage.errors import ObjectNotFoundError
from autolabel.storage.images import decode_image
from autolabel.storage.objectstore import ObjectStore
from autolabel.storage.overlay import render_overlay
from autolabel.storage.rle import decode_rle
from autolabel.storage.urls import is_url, split_file_url
from autolabel.tasks.resources import Resources


class ExportRequest(BaseModel):
    """What to export and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, description="Dataset name.")
    output: str = Field(min_length=1, description="Local path, file:// or s3:// URL of the JSON.")
    run_id: int | None = Field(None, description="Only this label run's annotations.")
    segmentation: Literal["rle", "polygon"] = "rle"
    overlays: int = Field(8, ge=0, le=1000, description="Images rendered as PNG overlays.")
    image_root: str | None = Field(
        None,
        description="Store URL the COCO file_names are relative to (default: the dataset's "
        "source, from its label runs).",
    )


class ExportResult(BaseModel):
    """Where the export went and what it holds."""

    model_config = ConfigDict(frozen=True)

    output: str
    images: int
    annotations: int
    seconds: float
    overlay_urls: list[str] = Field(default_factory=list)


def _destination(output: str, resources: Resources) -> tuple[ObjectStore, str] | Path:
    """A local path, or (store, key) for a URL; the store is rooted at the URL's folder."""
    if not is_url(output):
        return Path(output).expanduser().resolve()
    folder, name = split_file_url(output)
    return resources.store(folder), name


def _overlay_key(output: str, image_id: int) -> str:
    stem, _ = splitext(output)
    return f"{stem}_overlays/{image_id}.png"


def _write_overlays(request: ExportRequest, dataset_id: int, resources: Resources) -> list[str]:
    """Render up to `request.overlays` annotated images beside the export; returns their URLs."""
    written = []
    with session_scope(resources.engine) as session:
        sample = queries.sample_annotated_images(
            session, dataset_id=dataset_id, run_id=request.run_id, limit=request.overlays
        )
        annotations = {
            image_id: queries.image_annotations(session, image_id=image_id, run_id=request.run_id)
            for image_id, _ in sample
        }
    for image_id, url in sample:
        store, key = resources.open_object(url)
        try:
            rgb = decode_image(store.get(key), max_pixels=resources.config.max_image_pixels).rgb
        except ObjectNotFoundError:
            continue  # the image was deleted since it was labeled
        anns = annotations[image_id]
        masks = [decode_rle(a.rle) for a in anns]
        labels = [f"{a.category} {a.score:.2f}" if a.score else a.category for a in anns]
        png = render_overlay(rgb, masks, [a.bbox_xywh_px for a in anns], labels)
        target = _overlay_key(request.output, image_id)
        destination = _destination(target, resources)
        if isinstance(destination, Path):
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(png)
            except OSError as exc:
                raise unwritable(destination, exc) from exc
            written.append(str(destination))
        else:
            destination[0].put(destination[1], png, content_type="image/png")
            written.append(target)
    return written


def export_dataset(request: ExportRequest, resources: Resources) -> ExportResult:
    """Write the COCO JSON (streaming, atomic) and the overlays."""
    with session_scope(resources.engine) as session:
        dataset_id = queries.require_dataset(session, name=request.dataset)
        stats = write_coco_json(
            session,
            dataset_id=dataset_id,
            destination=_destination(request.output, resources),
            flt=ExportFilter(run_id=request.run_id),
            segmentation=request.segmentation,
            image_root=request.image_root,
        )
    overlays = _write_overlays(request, dataset_id, resources) if request.overlays else []
    return ExportResult(
        output=request.output,
        images=stats.n_images,
        annotations=stats.n_annotations,
        seconds=round(stats.seconds, 3),
        overlay_urls=overlays,
    )
