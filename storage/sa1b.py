"""SA-1B per-image JSON: records, folders, tar shards, and conversion to and from COCO.

One SA-1B sample is an image plus `<stem>.json`:
`{"image": {image_id, width, height, file_name}, "annotations": [{id, segmentation (compressed
RLE), bbox (xywh px), area, predicted_iou, stability_score, point_coords ([[x, y]] px),
crop_box (xywh px)}]}`. SA-1B is distributed as tar shards (`sa_000000.tar` holding `sa_1.jpg`,
`sa_1.json`, ...). Shards are read as streams (`autolabel.storage.tar_stream`): members are never
extracted to paths taken from the archive, and image and JSON members must sit next to each other
(as in SA-1B) so that memory stays bounded. Names inside records are untrusted and validated like
object-store keys before any file is touched.
"""

import io
import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from scipy import ndimage  # type: ignore[import-untyped]

from autolabel.storage.coco import (
    annotation_record,
    category_record,
    image_record,
    read_coco,
    segmentation_to_rle,
)
from autolabel.storage.errors import FormatError, UnsafeKeyError
from autolabel.storage.rle import Rle, decode_rle, rle_areas, rle_bboxes
from autolabel.storage.tar_stream import iter_tar
from autolabel.storage.urls import validate_key

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_PENDING_MEMBERS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Sa1bImage:
    """The `image` block: id, size in pixels and the image's file name (next to the JSON)."""

    image_id: int
    width: int
    height: int
    file_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Sa1bAnnotation:
    """One mask.

    Attributes:
        id: Annotation id (unique within the dataset).
        segmentation: Compressed RLE of an (height, width) mask.
        bbox_xywh_px: Box (x, y, width, height) in image pixels.
        area: Mask area in pixels.
        predicted_iou: Model's IoU prediction (1.0 for converted ground truth).
        stability_score: Mask stability (1.0 for converted ground truth).
        point_coords: Prompt points [[x, y], ...] in image pixels.
        crop_box: Crop (x, y, width, height) the mask was generated in, image pixels.
    """

    id: int
    segmentation: Rle
    bbox_xywh_px: tuple[float, float, float, float]
    area: float
    predicted_iou: float
    stability_score: float
    point_coords: tuple[tuple[float, float], ...]
    crop_box: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sa1bRecord:
    """One image's SA-1B JSON document."""

    image: Sa1bImage
    annotations: tuple[Sa1bAnnotation, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sa1bSample:
    """A record plus its encoded image bytes (as stored in the folder or shard)."""

    record: Sa1bRecord
    image_bytes: bytes


def _box(value: Any, what: str) -> tuple[float, float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError(f"expected {what} as 4 numbers, got {str(value)[:40]}")
    x, y, w, h = (float(v) for v in value)
    return x, y, w, h


def _annotation(raw: Mapping[str, Any], height: int, width: int) -> Sa1bAnnotation:
    seg = raw["segmentation"]
    if [int(s) for s in seg["size"]] != [height, width] or not isinstance(seg["counts"], str):
        raise ValueError(f"expected an RLE of size [{height}, {width}] with string counts")
    points = tuple((float(p[0]), float(p[1])) for p in raw.get("point_coords", ()))
    return Sa1bAnnotation(
        id=int(raw["id"]),
        segmentation=Rle(size=[height, width], counts=seg["counts"]),
        bbox_xywh_px=_box(raw["bbox"], "bbox"),
        area=float(raw["area"]),
        predicted_iou=float(raw["predicted_iou"]),
        stability_score=float(raw["stability_score"]),
        point_coords=points,
        crop_box=_box(raw.get("crop_box", [0, 0, width, height]), "crop_box"),
    )


def parse_record(data: bytes | str | Mapping[str, Any], *, name: str) -> Sa1bRecord:
    """Parse and validate one SA-1B JSON document.

    Raises:
        FormatError: Not JSON, or a missing/ill-typed field (the message names `name`).
    """
    try:
        doc = json.loads(data) if isinstance(data, bytes | str) else data
        img = doc["image"]
        image = Sa1bImage(
            image_id=int(img["image_id"]),
            width=int(img["width"]),
            height=int(img["height"]),
            file_name=validate_key(str(img["file_name"])),
        )
        anns = tuple(_annotation(a, image.height, image.width) for a in doc["annotations"])
    except (ValueError, KeyError, TypeError, IndexError, UnsafeKeyError) as exc:
        raise FormatError(f"SA-1B JSON {name}: {type(exc).__name__}: {exc}") from exc
    return Sa1bRecord(image=image, annotations=anns)


def record_to_json(record: Sa1bRecord) -> dict[str, Any]:
    """The SA-1B JSON document of a record."""
    img = record.image
    return {
        "image": {
            "image_id": img.image_id,
            "width": img.width,
            "height": img.height,
            "file_name": img.file_name,
        },
        "annotations": [
            {
                "id": a.id,
                "segmentation": dict(a.segmentation),
                "bbox": list(a.bbox_xywh_px),
                "area": a.area,
                "predicted_iou": a.predicted_iou,
                "stability_score": a.stability_score,
                "point_coords": [list(p) for p in a.point_coords],
                "crop_box": list(a.crop_box),
            }
            for a in record.annotations
        ],
    }


def _json_name(file_name: str) -> str:
    return str(PurePosixPath(file_name).with_suffix(".json"))


def read_folder(folder: Path) -> Iterator[Sa1bSample]:
    """Samples of a folder of `<stem>.json` + image pairs, in JSON file name order.

    Raises:
        FormatError: A malformed JSON, or an image named by a JSON that is missing or outside
            the folder.
    """
    root = folder.resolve()
    for json_path in sorted(root.rglob("*.json")):
        rel = json_path.relative_to(root).as_posix()
        record = parse_record(json_path.read_bytes(), name=str(json_path))
        image_path = (json_path.parent / record.image.file_name).resolve()
        if not image_path.is_relative_to(root) or not image_path.is_file():
            raise FormatError(
                f"SA-1B folder {folder}: {rel} names image {record.image.file_name!r}, expected "
                "a file next to it inside the folder"
            )
        yield Sa1bSample(record=record, image_bytes=image_path.read_bytes())


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(data)
    Path(tmp.name).replace(path)


def write_folder(folder: Path, samples: Iterable[Sa1bSample]) -> int:
    """Write samples as image + `<stem>.json` pairs (each file written atomically).

    Returns:
        Number of samples written.
    """
    n = 0
    for sample in samples:
        file_name = validate_key(sample.record.image.file_name)
        image_path = folder / file_name
        image_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(image_path, sample.image_bytes)
        doc = json.dumps(record_to_json(sample.record), separators=(",", ":")).encode()
        _atomic_write(folder / _json_name(file_name), doc)
        n += 1
    return n


def read_shard(source: Path | BinaryIO, *, name: str | None = None) -> Iterator[Sa1bSample]:
    """Stream the samples of an SA-1B tar shard (plain or compressed), in archive order.

    Args:
        source: Shard path, or a readable binary stream (e.g. `ObjectStore.open(key)`).
        name: How to name the shard in errors (default: the path).

    Raises:
        FormatError: Truncated or damaged shard, malformed JSON, an image without its JSON (or
            the reverse), or image/JSON pairs that are not next to each other.
    """
    label = name or (str(source) if isinstance(source, Path) else "<shard stream>")
    images: dict[str, bytes] = {}
    records: dict[str, Sa1bRecord] = {}
    for member, data in iter_tar(source, name=label):
        path = PurePosixPath(member)
        stem = str(path.with_suffix(""))
        if path.suffix.lower() == ".json":
            records[stem] = parse_record(data, name=f"{label}:{member}")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            images[stem] = data
        else:
            continue
        if stem in images and stem in records:
            yield Sa1bSample(record=records.pop(stem), image_bytes=images.pop(stem))
        elif len(images) + len(records) > MAX_PENDING_MEMBERS:
            raise FormatError(
                f"SA-1B shard {label}: expected each image next to its JSON, but "
                f"{len(images) + len(records)} members wait for their pair (e.g. {member!r})"
            )
    unpaired = sorted(images) + sorted(records)
    if unpaired:
        raise FormatError(
            f"SA-1B shard {label}: {len(unpaired)} members without their image/JSON pair, "
            f"e.g. {unpaired[:3]}"
        )


def write_shard(path: Path, samples: Iterable[Sa1bSample]) -> int:
    """Write an uncompressed SA-1B tar shard atomically (image then JSON for each sample).

    Returns:
        Number of samples written.
    """
    n = 0
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp")  # noqa: SIM115
    try:
        with tmp, tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for sample in samples:
                file_name = validate_key(sample.record.image.file_name)
                doc = json.dumps(record_to_json(sample.record), separators=(",", ":")).encode()
                for member, data in ((file_name, sample.image_bytes), (_json_name(file_name), doc)):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    info.mode = 0o644
                    archive.addfile(info, io.BytesIO(data))
                n += 1
        Path(tmp.name).replace(path)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    return n


def _interior_point(mask_hw: npt.NDArray[np.bool_]) -> tuple[tuple[float, float], ...]:
    """The mask pixel farthest from the background, as one [x, y] prompt (pixel center)."""
    if not mask_hw.any():
        return ()
    depth = ndimage.distance_transform_edt(np.pad(mask_hw, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return ((float(col) + 0.5, float(row) + 0.5),)


def coco_to_sa1b(doc: Mapping[str, Any]) -> Iterator[Sa1bRecord]:
    """SA-1B records of a COCO instances document (one per image, ids kept).

    Ground truth has no model scores: `predicted_iou` and `stability_score` default to 1.0 unless
    the annotation carries them; `point_coords` defaults to the mask's most interior pixel (so it
    can serve as a training prompt); `crop_box` to the whole image. Crowd annotations are kept.

    Raises:
        FormatError: A malformed document or segmentation.
    """
    coco = read_coco(doc)
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for im in coco["images"]:
        height, width = int(im["height"]), int(im["width"])
        anns = by_image.get(im["id"], [])
        rles = [segmentation_to_rle(a["segmentation"], height=height, width=width) for a in anns]
        areas, boxes = rle_areas(rles), rle_bboxes(rles)
        yield Sa1bRecord(
            image=Sa1bImage(
                image_id=int(im["id"]), width=width, height=height, file_name=im["file_name"]
            ),
            annotations=tuple(
                Sa1bAnnotation(
                    id=int(a["id"]),
                    segmentation=rle,
                    bbox_xywh_px=_box(a.get("bbox") or boxes[i].tolist(), "bbox"),
                    area=float(a.get("area", areas[i])),
                    predicted_iou=float(a.get("predicted_iou", 1.0)),
                    stability_score=float(a.get("stability_score", 1.0)),
                    point_coords=tuple((float(p[0]), float(p[1])) for p in a["point_coords"])
                    if a.get("point_coords")
                    else _interior_point(decode_rle(rle)),
                    crop_box=_box(a.get("crop_box", [0, 0, width, height]), "crop_box"),
                )
                for i, (a, rle) in enumerate(zip(anns, rles, strict=True))
            ),
        )


def sa1b_to_coco(records: Iterable[Sa1bRecord], *, category_name: str = "object") -> dict[str, Any]:
    """A COCO instances document of SA-1B records (class-agnostic: one category, id 1).

    SA-1B fields without a COCO equivalent (predicted_iou, stability_score, point_coords,
    crop_box) are kept as extra annotation keys, so `coco_to_sa1b` restores them.

    Raises:
        FormatError: Two annotations share an id, or an id is below 1 (COCOeval treats id 0
            as "unmatched", which silently lowers scores).
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[int] = set()
    for record in records:
        img = record.image
        images.append(
            image_record(
                image_id=img.image_id, file_name=img.file_name, width=img.width, height=img.height
            )
        )
        for a in record.annotations:
            if a.id in seen or a.id < 1:
                raise FormatError(f"expected unique SA-1B annotation ids >= 1, got {a.id}")
            seen.add(a.id)
            extra = {
                "predicted_iou": a.predicted_iou,
                "stability_score": a.stability_score,
                "point_coords": [list(p) for p in a.point_coords],
                "crop_box": list(a.crop_box),
            }
            annotations.append(
                annotation_record(
                    annotation_id=a.id,
                    image_id=img.image_id,
                    category_id=1,
                    bbox_xywh_px=a.bbox_xywh_px,
                    area=a.area,
                    segmentation=a.segmentation,
                    extra=extra,
                )
            )
    categories = [category_record(category_id=1, name=category_name)]
    return {"images": images, "annotations": annotations, "categories": categories}
