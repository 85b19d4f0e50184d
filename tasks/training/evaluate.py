"""Evaluation runner: box mIoU by size, click mIoU, and COCO mask mAP from a results file.

Layouts:
- SA-1B (`data` is a folder or store URL of shards, or a folder of image + JSON pairs): every
  annotation is an object, prompted with its `bbox`.
- COCO (`coco_annotations` is an instances JSON, `data` the image folder): non-crowd annotations
  are the objects; with `detections` (a COCO results JSON of boxes: image_id, category_id, bbox
  xywh, score), the boxes are segmented and COCO segmentation mAP is computed with pycocotools.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from autolabel.storage.errors import FormatError, InvalidImageError, StorageError
from autolabel.storage.images import decode_image
from autolabel.storage.objectstore import open_store
from autolabel.storage.rle import decode_rle, encode_mask
from autolabel.storage.sa1b import read_folder, read_shard
from autolabel.tasks.training.data import FOLDER_UNIT, list_units

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


@dataclass(slots=True)
class _EvalCounts:
    box_ious: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    clicks: list[list[float]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _xyxy(bbox_xywh: Any) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox_xywh)
    return x, y, x + w, y + h


def iter_sa1b_images(source: str, *, s3: S3Config | None = None) -> Iterator[EvalImage | str]:
    """Images of an SA-1B source; a string names an unreadable shard or sample (skipped)."""
    for key in list_units(source, s3=s3):
        try:
            samples = (
                read_folder(Path(source))
                if key == FOLDER_UNIT
                else read_shard(open_store(source, s3=s3).open(key), name=key)
            )
            for sample in samples:
                rec = sample.record
                try:
                    rgb = decode_image(sample.image_bytes).rgb
                except InvalidImageError as exc:
                    yield f"{key}:{rec.image.file_name}: {exc}"
                    continue
                objects = [
                    EvalObject(decode_rle(a.segmentation), _xyxy(a.bbox_xywh_px), a.area)
                    for a in rec.annotations
                ]
                yield EvalImage(rec.image.image_id, rgb, objects)
        except (FormatError, StorageError) as exc:
            yield f"{key or source}: {exc}"


def iter_coco_images(annotations: dict[str, Any], image_root: Path) -> Iterator[EvalImage | str]:
    """Images of a COCO instances document whose files are under `image_root` (crowd skipped)."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in annotations["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
    for im in annotations["images"]:
        h, w = int(im["height"]), int(im["width"])
        try:
            rgb = decode_image((image_root / im["file_name"]).read_bytes()).rgb
        except (OSError, InvalidImageError) as exc:
            yield f"{im['file_name']}: {exc}"
            continue
        objects = [
            EvalObject(
                decode_rle(segmentation_to_rle(a["segmentation"], height=h, width=w)),
                _xyxy(a["bbox"]),
                float(a["area"]),
            )
            for a in by_image.get(int(im["id"]), [])
        ]
        yield EvalImage(int(im["id"]), rgb, objects)


def evaluate_images(
    model: EfficientViTSam,
    images: Iterator[EvalImage | str],
    *,
    clicks: bool = True,
    max_images: int | None = None,
) -> dict[str, float]:
    """Box mIoU (overall and by size) and, with `clicks`, mIoU at 1/3/5 clicks.

    Returns:
        Flat metrics: see `summarize_box_miou` and `summarize_clicks`, plus `images` and
        `skipped` counts.
    """
    tally, seen = _EvalCounts(), 0
    for item in images:
        if isinstance(item, str):
            log.warning("skipping unreadable evaluation data %s", item)
            tally.skipped.append(item)
            continue
        if max_images is not None and seen >= max_images:
            break
        seen += 1
        objects = [o for o in item.objects if o.mask.any()]
        if not objects:
            continue
        emb = encode_images(model, [item.rgb])[0]
        boxes = np.array([o.box_xyxy_px for o in objects], dtype=np.float64)
        preds = box_masks(model, emb, boxes)
        for obj, pred in zip(objects, preds, strict=True):
            tally.box_ious.append(mask_iou(pred, obj.mask))
            tally.areas.append(obj.area_px)
            if clicks:
                tally.clicks.append(click_ious(model, emb, obj.mask, max_clicks=max(CLICK_COUNTS)))
    metrics = summarize_box_miou(tally.box_ious, tally.areas)
    if clicks:
        metrics.update(summarize_clicks(tally.clicks))
    metrics["images"] = float(seen)
    metrics["skipped"] = float(len(tally.skipped))
    return metrics


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


def evaluate_model(request: EvalRequest) -> dict[str, float]:
    """Build the model `request` names and measure it; NaN marks a size bucket without objects."""
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
    metrics = evaluate_images(sam, images, clicks=request.clicks, max_images=request.max_images)
    if request.detections is not None and request.coco_annotations is not None:
        metrics.update(
            coco_mask_map(sam, request.coco_annotations, Path(request.data), request.detections)
        )
    return metrics
