"""Evaluation runner: box mIoU by size, click mIoU, and COCO mask mAP from a results file.

Layouts:
- SA-1B (`data` is a folder or store URL of shards, or a folder of image + JSON pairs): every
  annotation is an object, prompted with its `bbox`.
- COCO (`coco_annotations` is an instances JSON, `data` the image folder): non-crowd annotations
  are the objects; with `detections` (a COCO results JSON of boxes: image_id, category_id, bbox
  xywh, score), the boxes are segmented and COCO segmentation mAP is computed with pycocotools.

An item that cannot be used never stops the evaluation: a bad SA-1B item (see
`autolabel.storage.sa1b`), an image that cannot be read or decoded or whose size differs from its
record, a malformed COCO segmentation or box is logged (one warning naming it, with the reason),
counted and listed in the `EvalReport`, and the next item is evaluated.
"""

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autolabel.models.efficientvit_sam.inference import encode_images
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.evaluation import (
    CLICK_COUNTS,
    box_masks,
    click_ious,
    mask_iou,
    summarize_box_miou,
    summarize_clicks,
)
from autolabel.models.registry import create_model
from autolabel.storage.coco import segmentation_to_rle
from autolabel.storage.config import S3Config
from autolabel.storage.errors import FormatError, StorageError
from autolabel.storage.images import decode_image
from autolabel.storage.objectstore import open_store
from autolabel.storage.rle import decode_rle, encode_mask
from autolabel.storage.sa1b import BadSample, Sa1bSample, read_folder, read_shard
from autolabel.tasks.training.data import FOLDER_UNIT, list_units, sample_rgb

log = logging.getLogger(__name__)
_AP_NAMES = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


@dataclass(frozen=True, slots=True)
class EvalObject:
    """One ground-truth object: (H, W) bool mask, xyxy pixel box, area in pixels."""

    mask: npt.NDArray[np.bool_]
    box_xyxy_px: tuple[float, float, float, float]
    area_px: float


@dataclass(frozen=True, slots=True)
class EvalImage:
    """One image (H, W, 3) uint8 RGB with its objects and COCO image id."""

    image_id: int
    rgb: npt.NDArray[np.uint8]
    objects: list[EvalObject]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalReport:
    """What an evaluation measured, and on how many items.

    Attributes:
        metrics: Flat metrics (see `summarize_box_miou`, `summarize_clicks`, `coco_mask_map`);
            NaN marks a size bucket without objects.
        images_used: Images evaluated.
        skipped: Items that could not be used, each named with the reason, in the order met.
    """

    metrics: dict[str, float]
    images_used: int
    skipped: list[BadSample]

    @property
    def images_skipped(self) -> int:
        """How many items were skipped."""
        return len(self.skipped)


@dataclass(slots=True)
class _EvalCounts:
    box_ious: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    clicks: list[list[float]] = field(default_factory=list)
    skipped: list[BadSample] = field(default_factory=list)
    used: int = 0


def _xyxy(bbox_xywh: Any) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox_xywh)
    return x, y, x + w, y + h


def iter_sa1b_images(source: str, *, s3: S3Config | None = None) -> Iterator[EvalImage | BadSample]:
    """Images of an SA-1B source; a `BadSample` names an item that cannot be used, and why.

    Reading goes on after a bad item; a shard that cannot be opened is one bad item.
    """
    for key in list_units(source, s3=s3):
        try:
            samples = (
                read_folder(Path(source))
                if key == FOLDER_UNIT
                else read_shard(open_store(source, s3=s3).open(key), name=key)
            )
            for sample in samples:
                if isinstance(sample, BadSample):
                    yield sample
                else:
                    yield _sa1b_image(sample, f"{key or source}:{sample.record.image.file_name}")
        except StorageError as exc:  # the unit cannot be opened or read on
            yield BadSample(name=key or source, reason=str(exc))


def _sa1b_image(sample: Sa1bSample, name: str) -> EvalImage | BadSample:
    rec = sample.record
    try:
        rgb = sample_rgb(sample)
        objects = [
            EvalObject(decode_rle(a.segmentation), _xyxy(a.bbox_xywh_px), a.area)
            for a in rec.annotations
        ]
    except StorageError as exc:  # InvalidImageError, FormatError
        return BadSample(name=name, reason=str(exc))
    return EvalImage(rec.image.image_id, rgb, objects)


def iter_coco_images(
    annotations: dict[str, Any], image_root: Path
) -> Iterator[EvalImage | BadSample]:
    """Images of a COCO instances document whose files are under `image_root` (crowd skipped);
    a `BadSample` names an image that cannot be used (file, decoding, size, segmentation, box)."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in annotations["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
    for im in annotations["images"]:
        yield _coco_image(im, by_image.get(int(im["id"]), []), image_root)


def _coco_image(
    im: dict[str, Any], anns: list[dict[str, Any]], image_root: Path
) -> EvalImage | BadSample:
    name = str(image_root / str(im.get("file_name")))
    try:
        h, w = int(im["height"]), int(im["width"])
        rgb = decode_image((image_root / im["file_name"]).read_bytes()).rgb
        if rgb.shape[:2] != (h, w):
            raise FormatError(f"expected a {h}x{w} image, got {rgb.shape[0]}x{rgb.shape[1]}")
        objects = [
            EvalObject(
                decode_rle(segmentation_to_rle(a["segmentation"], height=h, width=w)),
                _xyxy(a["bbox"]),
                float(a["area"]),
            )
            for a in anns
        ]
    except (OSError, StorageError, KeyError, TypeError, ValueError) as exc:
        return BadSample(name=name, reason=f"{type(exc).__name__}: {exc}")
    return EvalImage(int(im["id"]), rgb, objects)


def evaluate_images(
    model: EfficientViTSam,
    images: Iterable[EvalImage | BadSample],
    *,
    clicks: bool = True,
    max_images: int | None = None,
) -> EvalReport:
    """Box mIoU (overall and by size) and, with `clicks`, mIoU at 1/3/5 clicks.

    Each `BadSample` is logged (one warning naming it, with the reason) and skipped; the next
    image is evaluated. With `max_images`, reading stops once that many images were used.

    Returns:
        The metrics (see `summarize_box_miou` and `summarize_clicks`), the number of images
        used and the skipped items.
    """
    tally = _EvalCounts()
    for item in images:
        if max_images is not None and tally.used >= max_images:
            break
        if isinstance(item, BadSample):
            log.warning("skipping bad evaluation item %s: %s", item.name, item.reason)
            tally.skipped.append(item)
            continue
        tally.used += 1
        _measure(model, item, tally, clicks=clicks)
    metrics = summarize_box_miou(tally.box_ious, tally.areas)
    if clicks:
        metrics.update(summarize_clicks(tally.clicks))
    return EvalReport(metrics=metrics, images_used=tally.used, skipped=tally.skipped)


def _measure(model: EfficientViTSam, image: EvalImage, tally: _EvalCounts, *, clicks: bool) -> None:
    """Add the box IoUs (and click IoUs) of one image's non-empty objects to `tally`."""
    objects = [o for o in image.objects if o.mask.any()]
    if not objects:
        return
    emb = encode_images(model, [image.rgb])[0]
    boxes = np.array([o.box_xyxy_px for o in objects], dtype=np.float64)
    preds = box_masks(model, emb, boxes)
    for obj, pred in zip(objects, preds, strict=True):
        tally.box_ious.append(mask_iou(pred, obj.mask))
        tally.areas.append(obj.area_px)
        if clicks:
            tally.clicks.append(click_ious(model, emb, obj.mask, max_clicks=max(CLICK_COUNTS)))


def coco_mask_map(
    model: EfficientViTSam, annotations_path: Path, image_root: Path, detections_path: Path
) -> dict[str, float]:
    """COCO segmentation AP of masks predicted from the boxes of a COCO results file.

    Returns:
        `map`, `ap50`, `ap75`, `ap_small`, `ap_medium`, `ap_large` (COCOeval `segm` stats, 0-1).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(annotations_path))
    dets = json.loads(detections_path.read_text())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for det in dets:
        by_image.setdefault(int(det["image_id"]), []).append(det)
    results = []
    for image_id, image_dets in by_image.items():
        info = gt.loadImgs([image_id])[0]
        rgb = decode_image((image_root / info["file_name"]).read_bytes()).rgb
        emb = encode_images(model, [rgb])[0]
        boxes = np.array([_xyxy(d["bbox"]) for d in image_dets], dtype=np.float64)
        for det, mask in zip(image_dets, box_masks(model, emb, boxes), strict=True):
            rle = dict(encode_mask(mask))
            results.append({**det, "segmentation": rle})
    if not results:
        return dict.fromkeys(_AP_NAMES, 0.0)
    evaluator = COCOeval(gt, gt.loadRes(results), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {name: float(v) for name, v in zip(_AP_NAMES, evaluator.stats[:6], strict=True)}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalRequest:
    """One evaluation of a model on SA-1B or COCO data (see the module docstring for layouts).

    Attributes:
        data: SA-1B source (folder or store URL), or the COCO image folder.
        model: Registry name of the architecture.
        checkpoint: Weights file; random initialisation when None.
        device: Where the model runs ("cpu", "cuda", "cuda:N").
        coco_annotations: COCO instances JSON (selects the COCO layout).
        detections: COCO results JSON of boxes, for mask mAP (COCO layout only).
        clicks: Also run the 1/3/5-click protocol.
        max_images: Evaluate at most this many images.
        s3: S3 client settings for store URLs.
    """

    data: str
    model: str
    checkpoint: Path | None = None
    device: str = "cpu"
    coco_annotations: Path | None = None
    detections: Path | None = None
    clicks: bool = True
    max_images: int | None = None
    s3: S3Config | None = None


def evaluate_model(request: EvalRequest) -> EvalReport:
    """Build the model `request` names and measure it (bad items are skipped and reported)."""
    sam = create_model(
        request.model,
        family="segmenter",
        checkpoint_path=request.checkpoint,
        device=request.device,
    )
    if request.coco_annotations is not None:
        doc = json.loads(request.coco_annotations.read_text())
        images = iter_coco_images(doc, Path(request.data))
    else:
        images = iter_sa1b_images(request.data, s3=request.s3)
    report = evaluate_images(sam, images, clicks=request.clicks, max_images=request.max_images)
    if request.detections is not None and request.coco_annotations is not None:
        ap = coco_mask_map(sam, request.coco_annotations, Path(request.data), request.detections)
        report = replace(report, metrics={**report.metrics, **ap})
    return report
