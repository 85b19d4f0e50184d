"""Automatic "segment everything" mask generation over a point grid, as SAM's generator.

A grid of single foreground points prompts the predictor (optionally on overlapping crops
as well as the whole image); the candidate masks are filtered by predicted IoU, stability
score and crop-edge contact, de-duplicated with box NMS within and across crops, optionally
cleaned of small holes and islands, and returned as SA-1B-style records whose segmentation is
an (H, W) bool mask (encode it with `autolabel.storage.rle.encode_mask` outside `models`).
Candidates are held bit-packed (`mask_ops.pack_masks`), as SAM holds them as RLE, to bound memory.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

import numpy as np
import numpy.typing as npt
import torch

from autolabel.models import mask_ops
from autolabel.models.box_ops import nms
from autolabel.models.errors import InvalidInputError
from autolabel.models.mask_ops import CropBoxXYXY


class CoordinateTransform(Protocol):
    """Maps pixel coordinates of an image to the model's prompt frame."""

    def apply_coords(
        self, coords: npt.NDArray[np.float64], original_size: tuple[int, int]
    ) -> npt.NDArray[np.float64]:
        """(..., 2) xy pixels of an image of `original_size` (h, w) -> prompt frame xy."""
        ...


class PointPromptPredictor(Protocol):
    """What the generator needs from a SAM-style predictor, e.g. `autolabel.models.SamPredictor`."""

    @property
    def transform(self) -> CoordinateTransform:
        """The image-to-prompt-frame coordinate transform."""
        ...

    @property
    def device(self) -> torch.device:
        """Device that prompt tensors must live on."""
        ...

    def set_image(self, image: npt.NDArray[np.uint8]) -> None:
        """Encode an (H, W, 3) uint8 RGB image."""
        ...

    def reset_image(self) -> None:
        """Forget the encoded image."""
        ...

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks (B, C, H, W) at image size, IoU predictions (B, C), low-res logits."""
        ...


class MaskRecord(TypedDict):
    """One generated mask, SA-1B style. Coordinates are pixels of the full image."""

    segmentation: npt.NDArray[np.bool_]
    bbox: list[float]
    area: int
    predicted_iou: float
    stability_score: float
    point_coords: list[list[float]]
    crop_box: list[float]


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskGeneratorConfig:
    """Settings of automatic mask generation; defaults are SAM's.

    Attributes:
        points_per_side: grid points per side of the whole image (layer 0).
        points_per_batch: points sent to the decoder in one call (memory vs. speed).
        pred_iou_thresh: keep masks whose predicted IoU is greater than this (0 disables).
        stability_score_thresh: keep masks whose stability score is at least this (0 disables).
        stability_score_offset: logit offset used by the stability score.
        mask_threshold: logit at which a pixel belongs to a mask.
        box_nms_thresh: box IoU above which duplicates within one crop are removed.
        crop_n_layers: crop layers beyond the whole image (layer i has (2**i)^2 crops).
        crop_nms_thresh: box IoU above which duplicates across crops are removed.
        crop_overlap_ratio: overlap of neighbouring crops as a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i per side.
        min_mask_region_area: holes and islands smaller than this many pixels are removed.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def __post_init__(self) -> None:
        for name in ("points_per_side", "points_per_batch", "crop_n_points_downscale_factor"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"expected {name} >= 1, got {getattr(self, name)}")
        for name in ("crop_n_layers", "min_mask_region_area", "stability_score_offset"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"expected {name} >= 0, got {getattr(self, name)}")
        for name in ("box_nms_thresh", "crop_nms_thresh", "crop_overlap_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(f"expected {name} in [0, 1], got {getattr(self, name)}")


@dataclass(slots=True)
class _Candidates:
    """Masks accumulated during generation; tensors are on the CPU, coordinates image frame.

    `masks` holds one bit-packed full-image mask per row (`mask_ops.pack_masks`).
    """

    masks: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    areas: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 4), dtype=torch.int64))
    iou_preds: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    stability: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    points: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 2), dtype=torch.float64))
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 4), dtype=torch.int64))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def select(self, keep: torch.Tensor) -> "_Candidates":
        """Rows at the int64 indices `keep`, in that order."""
        index = keep.cpu()
        return _Candidates(
            masks=self.masks[index.numpy()],
            areas=self.areas[index],
            boxes=self.boxes[index],
            iou_preds=self.iou_preds[index],
            stability=self.stability[index],
            points=self.points[index],
            crop_boxes=self.crop_boxes[index],
        )

    @staticmethod
    def concat(parts: list["_Candidates"]) -> "_Candidates":
        if not parts:
            return _Candidates()
        return _Candidates(
            masks=np.concatenate([p.masks for p in parts]),
            areas=torch.cat([p.areas for p in parts]),
            boxes=torch.cat([p.boxes for p in parts]),
            iou_preds=torch.cat([p.iou_preds for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            points=torch.cat([p.points for p in parts]),
            crop_boxes=torch.cat([p.crop_boxes for p in parts]),
        )


class AutomaticMaskGenerator:
    """Segment everything in an image by prompting a predictor with a grid of points.

    Thread safety is the predictor's: the generator calls `set_image` / `predict_torch` /
    `reset_image` on it and holds no per-image state itself. With `SamPredictor` (image state
    per thread) one generator can serve several threads; with a predictor that keeps one
    shared image, use one generator and predictor per thread.
    """

    def __init__(
        self, predictor: PointPromptPredictor, config: MaskGeneratorConfig | None = None
    ) -> None:
        self.predictor = predictor
        self.config = config if config is not None else MaskGeneratorConfig()
        self.point_grids = mask_ops.build_layer_point_grids(
            self.config.points_per_side,
            self.config.crop_n_layers,
            self.config.crop_n_points_downscale_factor,
        )

    @torch.inference_mode()
    def generate(self, image_uint8_hwc_rgb: npt.NDArray[np.uint8]) -> list[MaskRecord]:
        """All masks found in one image.

        Args:
            image_uint8_hwc_rgb: (H, W, 3) uint8 RGB image.

        Returns:
            SA-1B-style records sorted by decreasing predicted IoU; bbox and crop_box are
            xywh pixels, point_coords the [[x, y]] prompt, all in the full image frame.
        """
        image = _check_image(image_uint8_hwc_rgb)
        image_hw = (image.shape[0], image.shape[1])
        crop_boxes, layers = mask_ops.generate_crop_boxes(
            image_hw, self.config.crop_n_layers, self.config.crop_overlap_ratio
        )
        found = _Candidates.concat(
            [
                self._process_crop(image, box, layer)
                for box, layer in zip(crop_boxes, layers, strict=True)
            ]
        )
        if len(crop_boxes) > 1 and len(found) > 0:
            # Prefer masks from smaller crops.
            crop_area = (found.crop_boxes[:, 2:] - found.crop_boxes[:, :2]).prod(dim=1)
            found = found.select(self._nms(found.boxes, 1.0 / crop_area.double(), crop=True))
        if self.config.min_mask_region_area > 0 and len(found) > 0:
            found = self._clean_small_regions(found, image_hw)
        order = torch.sort(found.iou_preds, descending=True, stable=True).indices
        return self._records(found.select(order), image_hw)

    def _nms(self, boxes: torch.Tensor, scores: torch.Tensor, *, crop: bool) -> torch.Tensor:
        threshold = self.config.crop_nms_thresh if crop else self.config.box_nms_thresh
        return nms(boxes, scores.float(), threshold)

    def _process_crop(
        self, image: npt.NDArray[np.uint8], crop_box: CropBoxXYXY, layer: int
    ) -> _Candidates:
        """Candidates from one crop, de-duplicated, in the image frame."""
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        crop_hw = (crop.shape[0], crop.shape[1])
        points_xy = self.point_grids[layer] * np.array([crop_hw[1], crop_hw[0]], dtype=np.float64)
        self.predictor.set_image(crop)
        try:
            batches = [
                self._process_batch(points, crop_box, (image.shape[0], image.shape[1]))
                for points in _batches(points_xy, self.config.points_per_batch)
            ]
        finally:
            self.predictor.reset_image()
        found = _Candidates.concat(batches)
        if len(found) == 0:
            return found
        found = found.select(self._nms(found.boxes, found.iou_preds, crop=False))
        offset = torch.tensor([x0, y0, x0, y0], dtype=torch.int64)
        found.boxes = found.boxes + offset
        found.points = found.points + offset[:2].double()
        return found

    def _process_batch(
        self, points_xy: npt.NDArray[np.float64], crop_box: CropBoxXYXY, image_hw: tuple[int, int]
    ) -> _Candidates:
        """Masks for one batch of points, filtered; boxes and points in the crop frame."""
        cfg = self.config
        crop_hw = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
        device = self.predictor.device
        prompt_xy = self.predictor.transform.apply_coords(points_xy, crop_hw)
        coords = torch.as_tensor(prompt_xy, dtype=torch.float32, device=device)[:, None, :]
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int64, device=device)
        logits, iou_preds, _ = self.predictor.predict_torch(
            coords, labels, multimask_output=True, return_logits=True
        )
        n_masks = logits.shape[1]
        logits = logits.flatten(0, 1)
        iou_preds = iou_preds.flatten(0, 1).float()
        points = torch.as_tensor(points_xy, dtype=torch.float64).repeat_interleave(n_masks, 0)
        keep = torch.ones(len(iou_preds), dtype=torch.bool, device=iou_preds.device)
        if cfg.pred_iou_thresh > 0.0:
            keep &= iou_preds > cfg.pred_iou_thresh
        stability = mask_ops.stability_score(logits, cfg.mask_threshold, cfg.stability_score_offset)
        if cfg.stability_score_thresh > 0.0:
            keep &= stability >= cfg.stability_score_thresh
        masks = logits[keep] > cfg.mask_threshold
        boxes = mask_ops.masks_to_boxes_xyxy(masks)
        image_box = (0, 0, image_hw[1], image_hw[0])
        inside = ~mask_ops.is_box_near_crop_edge(boxes, crop_box, image_box)
        masks = mask_ops.uncrop_masks(masks[inside], crop_box, image_hw)
        keep_cpu = keep.cpu()
        n_kept = masks.shape[0]
        return _Candidates(
            masks=mask_ops.pack_masks(masks),
            areas=masks.flatten(1).sum(dim=1).cpu(),
            crop_boxes=torch.tensor([crop_box], dtype=torch.int64).expand(n_kept, 4).clone(),
            boxes=boxes[inside].cpu(),
            iou_preds=iou_preds[keep][inside].cpu(),
            stability=stability[keep][inside].cpu(),
            points=points[keep_cpu][inside.cpu()],
        )

    def _clean_small_regions(self, found: _Candidates, image_hw: tuple[int, int]) -> _Candidates:
        """Remove small holes and islands, then NMS again preferring untouched masks."""
        min_area = self.config.min_mask_region_area
        masks = []
        unchanged = []
        for mask in mask_ops.unpack_masks(found.masks, image_hw):
            mask, holes_changed = mask_ops.remove_small_regions(mask, min_area, "holes")
            mask, islands_changed = mask_ops.remove_small_regions(mask, min_area, "islands")
            masks.append(torch.from_numpy(mask))
            unchanged.append(not (holes_changed or islands_changed))
        stacked = torch.stack(masks)
        boxes = mask_ops.masks_to_boxes_xyxy(stacked)
        scores = torch.tensor(unchanged, dtype=torch.float32)
        nms_threshold = max(self.config.box_nms_thresh, self.config.crop_nms_thresh)
        keep = nms(boxes, scores, nms_threshold)
        changed = [i for i in keep.tolist() if not unchanged[i]]
        if changed:
            found.masks[changed] = mask_ops.pack_masks(stacked[changed])
            found.areas[changed] = stacked[changed].flatten(1).sum(dim=1)
            found.boxes[changed] = boxes[changed]
        return found.select(keep)

    def _records(self, found: _Candidates, image_hw: tuple[int, int]) -> list[MaskRecord]:
        records: list[MaskRecord] = []
        for i, mask in enumerate(mask_ops.unpack_masks(found.masks, image_hw)):
            x0, y0, x1, y1 = found.boxes[i].tolist()
            cx0, cy0, cx1, cy1 = found.crop_boxes[i].tolist()
            records.append(
                MaskRecord(
                    segmentation=mask,
                    bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    area=int(found.areas[i]),
                    predicted_iou=float(found.iou_preds[i]),
                    stability_score=float(found.stability[i]),
                    point_coords=[found.points[i].tolist()],
                    crop_box=[float(cx0), float(cy0), float(cx1 - cx0), float(cy1 - cy0)],
                )
            )
        return records


def _batches(
    points_xy: npt.NDArray[np.float64], batch_size: int
) -> Iterator[npt.NDArray[np.float64]]:
    for start in range(0, len(points_xy), batch_size):
        yield points_xy[start : start + batch_size]


def _check_image(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidInputError(
            f"expected a uint8 numpy image, got {type(image).__name__} "
            f"of dtype {getattr(image, 'dtype', None)}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return image
