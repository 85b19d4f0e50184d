"""COCO instances JSON: record builders, a streaming writer and a validating reader.

`CocoJsonWriter` writes `{"info", "licenses", "categories", "images", "annotations"}` record by
record, so an export of millions of annotations never holds them in memory. Segmentations are
compressed RLE (`{"size": [h, w], "counts": str}`) or polygon lists; see `autolabel.storage.rle`.

Image names. Review tools (CVAT, FiftyOne, Label Studio) open `file_name` relative to an image
root, so `coco_file_name` writes a storage URL below the root as its relative key, and any other
URL without its scheme (`s3://bucket/other/x.jpg` -> `bucket/other/x.jpg`, still unique per
store); the full URL goes to `coco_url`. `image_storage_key` reads any of these forms back.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from autolabel.storage.errors import FormatError
from autolabel.storage.rle import Rle, polygons_to_rle, uncompressed_to_rle
from autolabel.storage.urls import is_store_url, is_url, join_url, key_under

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def image_record(
    *, image_id: int, file_name: str, width: int, height: int, coco_url: str | None = None
) -> dict[str, Any]:
    """A COCO `images` entry; `width`/`height` in pixels, `coco_url` only when given."""
    record: dict[str, Any] = {"id": image_id, "file_name": file_name}
    if coco_url is not None:
        record["coco_url"] = coco_url
    record.update(width=width, height=height)
    return record


def image_json(
    image_id: int, storage_key: str, width: int, height: int, *, image_root: str | None
) -> str:
    """An `images` entry serialized (export hot path): `coco_file_name` of the key, and the key
    itself as `coco_url` when it is a URL."""
    name = coco_file_name(storage_key, image_root=image_root)
    url = f',"coco_url":{_DUMPS(storage_key)}' if name != storage_key else ""
    return f'{{"id":{image_id},"file_name":{_DUMPS(name)}{url},"width":{width},"height":{height}}}'


def coco_file_name(storage_key: str, *, image_root: str | None) -> str:
    """The `file_name` written for an image stored under `storage_key`.

    A URL below `image_root` gives its key relative to the root (`s3://b/raw/` +
    `s3://b/raw/a/1.jpg` -> `a/1.jpg`); any other URL gives the URL without its scheme and leading
    slashes (`s3://b/other/x.jpg` -> `b/other/x.jpg`, `file:///data/x.jpg` -> `data/x.jpg`). A
    stored key that is not a URL (e.g. from an import of bare names) is written unchanged.
    """
    if not is_url(storage_key):
        return storage_key
    if image_root is not None and (relative := key_under(image_root, storage_key)) is not None:
        return relative
    return storage_key.split("://", 1)[1].lstrip("/")


def image_storage_key(image: Mapping[str, Any], *, image_root: str | None = None) -> str:
    """The storage key a COCO `images` entry names, trying in order:

    1. `file_name` written as a URL (exports made before `coco_url` was written);
    2. `coco_url` when it is an `s3://` or `file://` URL (our exports; other tools write `""`
       or, like the COCO release, an `http://` download link, which is not a storage key);
    3. `file_name` joined to `image_root`, when given;
    4. `file_name` unchanged (a bare key).

    Raises:
        FormatError: The entry has no non-empty string `file_name`.
    """
    file_name = image.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise FormatError(f"expected a non-empty file_name in image {image.get('id')!r}")
    if is_url(file_name):
        return file_name
    coco_url = image.get("coco_url")
    if isinstance(coco_url, str) and is_store_url(coco_url):
        return coco_url
    if image_root is not None:
        return join_url(image_root, file_name.lstrip("/"))
    return file_name


def category_record(
    *, category_id: int, name: str, supercategory: str | None = None
) -> dict[str, Any]:
    """A COCO `categories` entry."""
    return {"id": category_id, "name": name, "supercategory": supercategory or ""}


def annotation_record(
    *,
    annotation_id: int,
    image_id: int,
    category_id: int,
    bbox_xywh_px: Sequence[float],
    area: float,
    segmentation: Rle | list[list[float]],
    iscrowd: bool = False,
    score: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO `annotations` entry.

    Args:
        annotation_id: Unique id within the file.
        image_id: Id of an `images` entry.
        category_id: Id of a `categories` entry.
        bbox_xywh_px: Box (x, y, width, height) in pixels, origin top-left.
        area: Mask area in pixels.
        segmentation: Compressed RLE, or polygons as flat [x0, y0, ...] pixel lists.
        iscrowd: COCO crowd flag.
        score: Detection score (results files and pseudo-labels).
        extra: More keys (e.g. predicted_iou), written after the standard ones.
    """
    record: dict[str, Any] = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(v) for v in bbox_xywh_px],
        "area": float(area),
        "iscrowd": int(iscrowd),
        "segmentation": segmentation,
    }
    if score is not None:
        record["score"] = float(score)
    if extra:
        record.update(extra)
    return record


class CocoJsonWriter:
    """Stream a COCO instances JSON document into a text file.

    Usage: open, `write_images(...)` (any number of calls), then `write_annotations(...)`, then
    close (or use it as a context manager). Images must all come before annotations.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        categories: Iterable[Mapping[str, Any]],
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the document head (info, licenses, categories) and open the images list."""
        self._out = stream
        self._section = "images"
        self._first = True
        self.n_images = 0
        self.n_annotations = 0
        cats = ",".join(_DUMPS(dict(c)) for c in categories)
        head = f'{{"info":{_DUMPS(dict(info or {}))},"licenses":[],"categories":[{cats}],'
        self._out.write(head + '"images":[')

    def _switch(self, section: str) -> None:
        if section == self._section:
            return
        if (self._section, section) != ("images", "annotations"):
            raise RuntimeError(f"expected images before annotations, got {section} after")
        self._out.write('],"annotations":[')
        self._section, self._first = section, True

    def write_raw(self, section: str, json_records: Iterable[str]) -> int:
        """Append already-serialized JSON objects to `section` ("images" or "annotations")."""
        self._switch(section)
        n = 0
        write = self._out.write
        for text in json_records:
            if not self._first:
                write(",")
            write(text)
            self._first = False
            n += 1
        if section == "images":
            self.n_images += n
        else:
            self.n_annotations += n
        return n

    def write_images(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append `images` entries; returns how many."""
        return self.write_raw("images", (_DUMPS(dict(r)) for r in records))

    def write_annotations(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append `annotations` entries; returns how many."""
        return self.write_raw("annotations", (_DUMPS(dict(r)) for r in records))

    def close(self) -> None:
        """Finish the document (the stream itself stays open)."""
        self._switch("annotations")
        self._out.write("]}\n")
        self._section = "closed"

    def __enter__(self) -> "CocoJsonWriter":
        """Return self."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the document unless an error is propagating (the file is then incomplete)."""
        if exc_type is None:
            self.close()


def read_coco(source: Path | Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """Load and check a COCO instances document (whole file in memory, as pycocotools does).

    Raises:
        FormatError: Not JSON, or missing/ill-typed `images`, `annotations` or `categories`.
    """
    label = name or (str(source) if isinstance(source, Path) else "<COCO dict>")
    if isinstance(source, Path):
        try:
            with source.open("rb") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as err:
            raise FormatError(f"expected a readable COCO JSON file at {label}: {err}") from err
    else:
        doc = dict(source)
    if not isinstance(doc, dict):
        raise FormatError(f"expected a JSON object in {label}, got {type(doc).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise FormatError(f"expected a list under {key!r} in {label}, got {doc.get(key)!r:.40}")
    return doc


def segmentation_to_rle(segmentation: Any, *, height: int, width: int) -> Rle:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) as a compressed RLE.

    Raises:
        FormatError: An unrecognised segmentation or an RLE of another size than the image's.
    """
    if isinstance(segmentation, list):
        return polygons_to_rle(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = [int(s) for s in segmentation["size"]]
        if size != [height, width]:
            raise FormatError(f"expected RLE size [{height}, {width}], got {size}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            return uncompressed_to_rle(counts, height, width)
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if isinstance(counts, str):
            return Rle(size=size, counts=counts)
    raise FormatError(f"expected polygons or an RLE dict, got {str(segmentation)[:60]}")
