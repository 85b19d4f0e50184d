"""Export a dataset (or run) for review in Label Studio, CVAT or FiftyOne (`export-review`).

Formats, all written under one output folder (local, `file://` or `s3://`):

- `label-studio`: `tasks.json` (one task per image, brush predictions in Label Studio's own
  RLE, region ids `a<annotation id>`) and `labeling_config.xml` (the project's labeling
  interface). Image URLs: presigned S3 URLs valid for `expiry_seconds`, or the raw `s3://` URLs
  for a bucket connected as Label Studio cloud storage (`url_mode`); `file://` images get
  local-files URLs relative to `local_files_root`.
- `cvat`: CVAT's "COCO 1.0" (datumaro `coco_instances`) layout,
  `annotations/instances_default.json` and, with `with_images`, `images/default/<file_name>`.
- `fiftyone`: `labels.json` for `COCODetectionDataset`, with images under `data/` or a
  `data_map.json` (file_name -> local path or URL) to pass as `data_path`.

Masks and boxes are fitted to their image on the way out; nothing stored is modified.
"""

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autolabel.storage.db import queries
from autolabel.storage.db.coco_export import ExportFilter, unwritable
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.review_rows import ReviewImage, iter_review_images, review_categories
from autolabel.storage.errors import ObjectNotFoundError, StorageError
from autolabel.storage.label_studio import RegionShape, labeling_config
from autolabel.storage.objectstore import ObjectStore
from autolabel.storage.review_coco import (
    FIFTYONE_DATA_MAP,
    annotations_path,
    images_folder,
)
from autolabel.storage.review_urls import MAX_EXPIRY_SECONDS, ImageUrlMode, ReviewImageUrls
from autolabel.storage.urls import is_url, parse_store_root, validate_key
from autolabel.tasks.export.review_writers import (
    WriteCounts,
    write_label_studio_tasks,
    write_review_coco,
)
from autolabel.tasks.resources import Resources

ReviewFormat = Literal["label-studio", "cvat", "fiftyone"]
LABEL_STUDIO_TASKS = "tasks.json"
LABEL_STUDIO_CONFIG = "labeling_config.xml"
MAX_EXPORT_IMAGE_IDS = 50_000  # one SQL IN list


class ReviewExportRequest(BaseModel):
    """What to export for review, in which tool's format, and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, description="Dataset name.")
    format: ReviewFormat = Field(description="label-studio, cvat or fiftyone.")
    output: str = Field(min_length=1, description="Local folder, or file:// / s3:// folder URL.")
    run_id: int | None = Field(None, description="Only this label run's images and annotations.")
    min_score: float | None = Field(None, description="Leave out annotations scored below this.")
    url_mode: ImageUrlMode = Field(
        "presigned", description="Label Studio image URLs of s3:// images: presigned or s3."
    )
    regions: RegionShape = Field(
        "brush", description="Label Studio regions: brush (exact masks) or polygon (outlines)."
    )
    expiry_seconds: int = Field(
        86_400, ge=1, le=MAX_EXPIRY_SECONDS, description="Lifetime of presigned URLs."
    )
    local_files_root: str | None = Field(
        None, description="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (file:// images)."
    )
    with_images: bool = Field(
        False, description="Copy the images into the export (cvat, fiftyone)."
    )
    image_root: str | None = Field(
        None, description="Store URL the file_names are relative to (default: dataset source)."
    )
    image_ids: tuple[int, ...] | None = Field(
        None,
        max_length=MAX_EXPORT_IMAGE_IDS,
        description="Only these images (a sampled review set); None: every selected image.",
    )

    @model_validator(mode="after")
    def _images_only_for_coco(self) -> "ReviewExportRequest":
        if self.with_images and self.format == "label-studio":
            raise ValueError("--with-images applies to the cvat and fiftyone formats only")
        return self


class ReviewExportResult(BaseModel):
    """What was written where."""

    model_config = ConfigDict(frozen=True)

    output: str
    format: ReviewFormat
    images: int
    annotations: int
    fitted: int = Field(description="Instances whose mask or box was fitted to their image.")
    files: list[str]
    images_copied: int = 0
    images_missing: list[str] = Field(default_factory=list)
    urls_expire_at: str | None = None
    seconds: float


class _Folder:
    """The export's output folder: a local directory or an object store root."""

    def __init__(self, output: str, resources: Resources) -> None:
        self.output = output
        self._store: ObjectStore | None = None
        self._root = Path(output).expanduser().resolve()
        if is_url(output):
            self._store = resources.store(output)
            return
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unwritable(self._root, exc) from exc

    def _destination(self, key: str) -> Path | tuple[ObjectStore, str]:
        validate_key(key)
        return self._root / key if self._store is None else (self._store, key)

    def location(self, key: str) -> str:
        """Where `key` lands: a local path or a URL."""
        if self._store is None:
            return str(self._root / key)
        return f"{self.output.rstrip('/')}/{key}"

    @contextlib.contextmanager
    def text(self, key: str) -> Iterator[IO[str]]:
        """A text stream whose content lands at `key` only if the block ends without error."""
        destination = self._destination(key)
        folder = destination.parent if isinstance(destination, Path) else None
        try:
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed and removed below
                "w", encoding="utf-8", suffix=".tmp", dir=folder, delete=False
            )
        except OSError as exc:
            raise unwritable(destination, exc) from exc
        tmp_path = Path(tmp.name)
        try:
            with tmp:
                yield tmp
            if isinstance(destination, Path):
                tmp_path.replace(destination)
            else:
                destination[0].put_file(destination[1], tmp_path)
        except StorageError:
            raise  # a store's own error (e.g. an image that cannot be read) says what failed
        except OSError as exc:
            raise unwritable(destination, exc) from exc
        finally:
            tmp_path.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write one object (an image copy)."""
        destination = self._destination(key)
        if not isinstance(destination, Path):
            destination[0].put(destination[1], data)
            return
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
        except OSError as exc:
            raise unwritable(destination, exc) from exc


class _ImageCopier:
    """Copies each exported image under the format's image folder, by its file_name."""

    def __init__(self, folder: _Folder, prefix: str, resources: Resources) -> None:
        self._folder, self._prefix, self._resources = folder, prefix, resources
        self.copied = 0
        self.missing: list[str] = []

    def __call__(self, image: ReviewImage, file_name: str) -> None:
        store, key = self._resources.open_object(image.storage_key)
        try:
            data = store.get(key)
        except ObjectNotFoundError:
            self.missing.append(image.storage_key)  # deleted since it was labeled
            return
        self._folder.put_bytes(f"{self._prefix}/{file_name}", data)
        self.copied += 1


def _data_map_entry(stream: IO[str], first: bool, image: ReviewImage, file_name: str) -> None:
    storage = image.storage_key
    target = str(parse_store_root(storage).path) if storage.startswith("file://") else storage
    stream.write(("\n" if first else ",\n") + json.dumps(file_name) + ":" + json.dumps(target))


def _filter(request: ReviewExportRequest) -> ExportFilter:
    return ExportFilter(run_id=request.run_id, min_score=request.min_score)


def _dataset_id(request: ReviewExportRequest, resources: Resources) -> int:
    """The dataset's id, after checking that it (and the run, when given) exist."""
    with session_scope(resources.engine) as session:
        return queries.require_dataset(session, name=request.dataset, run_id=request.run_id)


def _write_label_studio(
    request: ReviewExportRequest, resources: Resources, folder: _Folder, dataset_id: int
) -> WriteCounts:
    urls = ReviewImageUrls(
        mode=request.url_mode,
        s3=resources.config.s3,
        expiry_seconds=request.expiry_seconds,
        local_files_root=Path(request.local_files_root) if request.local_files_root else None,
    )
    flt = _filter(request)
    with session_scope(resources.engine) as session:
        cats = review_categories(session, dataset_id=dataset_id)
        with folder.text(LABEL_STUDIO_CONFIG) as stream:
            stream.write(labeling_config([name for _, name, _ in cats], request.regions))
        rows = iter_review_images(
            session, dataset_id=dataset_id, flt=flt, image_ids=request.image_ids
        )
        with folder.text(LABEL_STUDIO_TASKS) as stream:
            return write_label_studio_tasks(
                stream,
                rows,
                categories={i: n for i, n, _ in cats},
                image_url=urls,
                shape=request.regions,
            )


def _write_coco(
    request: ReviewExportRequest,
    resources: Resources,
    folder: _Folder,
    dataset_id: int,
    copier: _ImageCopier | None,
) -> WriteCounts:
    flavor: Literal["cvat", "fiftyone"] = "cvat" if request.format == "cvat" else "fiftyone"
    flt = _filter(request)
    with contextlib.ExitStack() as stack, session_scope(resources.engine) as session:
        image_root = request.image_root or queries.dataset_source_root(
            session, dataset_id=dataset_id, run_id=request.run_id
        )
        on_image: Callable[[ReviewImage, str], None] | None = copier
        if copier is None and flavor == "fiftyone":
            data_map = stack.enter_context(folder.text(FIFTYONE_DATA_MAP))
            data_map.write("{")
            first = [True]

            def map_entry(image: ReviewImage, file_name: str) -> None:
                _data_map_entry(data_map, first[0], image, file_name)
                first[0] = False

            on_image = map_entry

            stack.callback(data_map.write, "\n}\n")  # runs before the map is published
        with folder.text(annotations_path(flavor)) as stream:
            return write_review_coco(
                stream,
                iter_review_images(
                    session, dataset_id=dataset_id, flt=flt, image_ids=request.image_ids
                ),
                flavor=flavor,
                categories=review_categories(session, dataset_id=dataset_id),
                image_root=image_root,
                on_image=on_image,
            )


def export_review(request: ReviewExportRequest, resources: Resources) -> ReviewExportResult:
    """Write the review export `request` asks for; see the module docstring."""
    start = time.perf_counter()
    dataset_id = _dataset_id(request, resources)
    folder = _Folder(request.output, resources)
    expires = None
    copier = None
    if request.format == "label-studio":
        if request.url_mode == "presigned":
            expires = datetime.now(UTC) + timedelta(seconds=request.expiry_seconds)
        counts = _write_label_studio(request, resources, folder, dataset_id)
        keys = [LABEL_STUDIO_TASKS, LABEL_STUDIO_CONFIG]
    else:
        flavor: Literal["cvat", "fiftyone"] = "cvat" if request.format == "cvat" else "fiftyone"
        if request.with_images:
            copier = _ImageCopier(folder, images_folder(flavor), resources)
        counts = _write_coco(request, resources, folder, dataset_id, copier)
        keys = [annotations_path(flavor)]
        if copier is None and flavor == "fiftyone":
            keys.append(FIFTYONE_DATA_MAP)
    return ReviewExportResult(
        output=request.output,
        format=request.format,
        images=counts.images,
        annotations=counts.annotations,
        fitted=counts.fitted,
        files=[folder.location(k) for k in keys],
        images_copied=copier.copied if copier else 0,
        images_missing=copier.missing if copier else [],
        urls_expire_at=expires.isoformat(timespec="seconds") if expires else None,
        seconds=round(time.perf_counter() - start, 3),
    )
