"""SA-1B per-image JSON: records, folders and tar shards (COCO conversion: `sa1b_coco`).

One SA-1B sample is an image plus `<stem>.json`:
`{"image": {image_id, width, height, file_name}, "annotations": [{id, segmentation (compressed
RLE), bbox (xywh px), area, predicted_iou, stability_score, point_coords ([[x, y]] px),
crop_box (xywh px)}]}`. SA-1B is distributed as tar shards (`sa_000000.tar` holding `sa_1.jpg`,
`sa_1.json`, ...). Shards are read as streams (`autolabel.storage.tar_stream`): members are never
extracted to paths taken from the archive, and image and JSON members are expected next to each
other (as in SA-1B) so that memory stays bounded. Names inside records are untrusted and
validated like object-store keys before any file is touched.

Readers never stop at a bad item: a malformed JSON, an RLE whose size differs from its image
block, a JSON naming a missing image (or one outside the folder), an image without its JSON (or
the reverse) is yielded as one `BadSample` naming it, with the reason, and reading goes on with
the next item. Only a truncated or damaged tar ends its shard early, with one `BadSample` naming
the shard (the samples before the damage were already yielded).
"""

import io
import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from autolabel.storage.errors import FormatError, UnsafeKeyError
from autolabel.storage.local import atomic_write
from autolabel.storage.rle import Rle
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


@dataclass(frozen=True, slots=True)
class BadSample:
    """An item of a folder or shard that cannot be used; readers yield it and go on.

    Attributes:
        name: `<shard>:<member>` or the file path; the shard alone when its rest is unreadable.
        reason: What was expected and what was found.
    """

    name: str
    reason: str


def as_box_xywh(value: Any, what: str) -> tuple[float, float, float, float]:
    """A box (x, y, width, height) in pixels from 4 numbers (`what` names it in errors).

    Raises:
        ValueError: Not 4 numbers.
    """
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError(f"expected {what} as 4 numbers, got {str(value)[:40]}")
    x, y, w, h = (float(v) for v in value)
    return x, y, w, h


def _annotation(raw: Mapping[str, Any], height: int, width: int) -> Sa1bAnnotation:
    seg = raw["segmentation"]
    if [int(s) for s in seg["size"]] != [height, width] or not isinstance(seg["counts"], str):
        counts = type(seg["counts"]).__name__
        raise ValueError(
            f"annotation {raw.get('id')}: expected an RLE of size [{height}, {width}] (the image "
            f"block's) with string counts, got size {seg['size']} and {counts} counts"
        )
    points = tuple((float(p[0]), float(p[1])) for p in raw.get("point_coords", ()))
    return Sa1bAnnotation(
        id=int(raw["id"]),
        segmentation=Rle(size=[height, width], counts=seg["counts"]),
        bbox_xywh_px=as_box_xywh(raw["bbox"], "bbox"),
        area=float(raw["area"]),
        predicted_iou=float(raw["predicted_iou"]),
        stability_score=float(raw["stability_score"]),
        point_coords=points,
        crop_box=as_box_xywh(raw.get("crop_box", [0, 0, width, height]), "crop_box"),
    )


_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, UnsafeKeyError)


def _parse(data: bytes | str | Mapping[str, Any]) -> Sa1bRecord:
    doc = json.loads(data) if isinstance(data, bytes | str) else data
    img = doc["image"]
    image = Sa1bImage(
        image_id=int(img["image_id"]),
        width=int(img["width"]),
        height=int(img["height"]),
        file_name=validate_key(str(img["file_name"])),
    )
    anns = tuple(_annotation(a, image.height, image.width) for a in doc["annotations"])
    return Sa1bRecord(image=image, annotations=anns)


def _record_or_reason(data: bytes) -> Sa1bRecord | str:
    """The record of one SA-1B JSON document, or why it is not one."""
    try:
        return _parse(data)
    except _PARSE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"


def parse_record(data: bytes | str | Mapping[str, Any], *, name: str) -> Sa1bRecord:
    """Parse and validate one SA-1B JSON document.

    Raises:
        FormatError: Not JSON, or a missing/ill-typed field (the message names `name`).
    """
    try:
        return _parse(data)
    except _PARSE_ERRORS as exc:
        raise FormatError(f"SA-1B JSON {name}: {type(exc).__name__}: {exc}") from exc


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


def read_folder(folder: Path) -> Iterator[Sa1bSample | BadSample]:
    """Samples of a folder of `<stem>.json` + image pairs, in JSON file name order.

    A malformed JSON, or one naming an image that is missing or outside the folder, is one
    `BadSample` (named by the JSON's path); after the JSONs, each image that no JSON names and
    that has no `<stem>.json` next to it is one `BadSample` (named by its path).
    """
    root = folder.resolve()
    named: set[Path] = set()
    for json_path in sorted(root.rglob("*.json")):
        yield _folder_sample(root, json_path, named)
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.resolve() in named:
            continue
        if not path.with_suffix(".json").is_file():
            reason = f"expected {path.with_suffix('.json').name} next to this image, found none"
            yield BadSample(name=str(path), reason=reason)


def _folder_sample(root: Path, json_path: Path, named: set[Path]) -> Sa1bSample | BadSample:
    """The sample of one JSON file of a folder (its image is added to `named`)."""
    record = _record_or_reason(json_path.read_bytes())
    if isinstance(record, str):
        return BadSample(name=str(json_path), reason=record)
    image_path = (json_path.parent / record.image.file_name).resolve()
    if not image_path.is_relative_to(root) or not image_path.is_file():
        return BadSample(
            name=str(json_path),
            reason=f"names image {record.image.file_name!r}, expected a file next to it inside "
            f"the folder {root}, found none",
        )
    named.add(image_path)
    return Sa1bSample(record=record, image_bytes=image_path.read_bytes())


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
        atomic_write(image_path, sample.image_bytes)
        doc = json.dumps(record_to_json(sample.record), separators=(",", ":")).encode()
        atomic_write(folder / _json_name(file_name), doc)
        n += 1
    return n


# (stem, is_json) -> (member name, image bytes | JSON record | why the JSON is unreadable)
_Waiting = dict[tuple[str, bool], tuple[str, bytes | Sa1bRecord | str]]


def read_shard(
    source: Path | BinaryIO, *, name: str | None = None
) -> Iterator[Sa1bSample | BadSample]:
    """Stream the samples of an SA-1B tar shard (plain or compressed), in archive order.

    Bad items are yielded as `BadSample`s named `<name>:<member>` and reading goes on: a
    malformed JSON (its image is dropped with it), and a member whose image/JSON partner does not
    come within `MAX_PENDING_MEMBERS` members (memory stays bounded; reported when it leaves that
    window, or at the end). A truncated or damaged shard ends with one `BadSample` named `name`.

    Args:
        source: Shard path, or a readable binary stream (e.g. `ObjectStore.open(key)`).
        name: How to name the shard in bad items (default: the path).
    """
    label = name or (str(source) if isinstance(source, Path) else "<shard stream>")
    waiting: _Waiting = {}
    members = iter_tar(source, name=label)
    while True:
        try:
            entry = next(members, None)
        except FormatError as exc:
            yield BadSample(name=label, reason=str(exc))
            return
        if entry is None:
            break
        yield from _add_member(label, entry, waiting)
    for key, value in waiting.items():
        yield _unpaired(label, key, value)


def _add_member(
    label: str, entry: tuple[str, bytes], waiting: _Waiting
) -> Iterator[Sa1bSample | BadSample]:
    """Pair one shard member with its waiting partner, or let it wait (evicting the oldest)."""
    member, data = entry
    path = PurePosixPath(member)
    suffix = path.suffix.lower()
    if suffix != ".json" and suffix not in IMAGE_SUFFIXES:
        return
    stem, is_json = str(path.with_suffix("")), suffix == ".json"
    key, mine = (stem, is_json), (member, _record_or_reason(data) if is_json else data)
    partner = waiting.pop((stem, not is_json), None)
    if partner is not None:
        (json_member, record), (_, image) = (mine, partner) if is_json else (partner, mine)
        if isinstance(record, Sa1bRecord) and isinstance(image, bytes):
            yield Sa1bSample(record=record, image_bytes=image)
        else:
            yield BadSample(name=f"{label}:{json_member}", reason=str(record))
        return
    if key in waiting:  # the same stem twice: the first one has lost its chance of a pair
        yield _unpaired(label, key, waiting.pop(key))
    waiting[key] = mine
    if len(waiting) > MAX_PENDING_MEMBERS:
        oldest = next(iter(waiting))
        yield _unpaired(label, oldest, waiting.pop(oldest))


def _unpaired(
    label: str, key: tuple[str, bool], value: tuple[str, bytes | Sa1bRecord | str]
) -> BadSample:
    member, payload = value
    if isinstance(payload, str):  # a JSON that could not be parsed
        return BadSample(name=f"{label}:{member}", reason=payload)
    partner = "image" if key[1] else "JSON"
    return BadSample(
        name=f"{label}:{member}",
        reason=f"expected its {partner} within {MAX_PENDING_MEMBERS} members of it (SA-1B "
        f"keeps each image next to its JSON), found none",
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
