"""EfficientViT-SAM and GroundingDINO: pure torch, no IO, no orchestration.

Public API (imported lazily, so `autolabel.models.errors` and other light submodules do not pay
for importing torch):

- `create_model(name, *, family=None, checkpoint_path=None, device="cpu", expected_sha256=None)`
  builds any registered model (segmenter or detector), loaded strictly, in eval mode
- `MODEL_SPECS` (every family), `get_spec(name, *, family=None)`, `SegmenterSpec`,
  `DetectorSpec`
- `SamPredictor(model)`: `set_image`, `predict`, `predict_torch`, `for_image`, ...
- `encode_images(model, images)`, `decode_prompts(model, embedding, ...)`,
  `segment_boxes(model, embedding, boxes)`, `segment_boxes_batch(model, images, boxes)`
- `ImageEmbedding`, `MaskSet`
- `prepare_for_inference(model, ...)`, `optimize_for_inference(model)`
- `load_checkpoint(model, path, ...)`, `save_checkpoint(model, path, model_name=..., meta=...)`
"""

from typing import TYPE_CHECKING

from autolabel.models.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from autolabel.models.checkpoints import load_checkpoint, save_checkpoint
    from autolabel.models.efficientvit_sam.inference import (
        decode_prompts,
        encode_images,
        segment_boxes,
        segment_boxes_batch,
    )
    from autolabel.models.efficientvit_sam.optimize import (
        optimize_for_inference,
        prepare_for_inference,
    )
    from autolabel.models.efficientvit_sam.sam import EfficientViTSam
    from autolabel.models.predictor import SamPredictor
    from autolabel.models.registry import (
        MODEL_SPECS,
        DetectorSpec,
        SegmenterSpec,
        create_model,
        get_spec,
    )
    from autolabel.models.types import ImageEmbedding, MaskSet

_EXPORTS = {
    "load_checkpoint": "autolabel.models.checkpoints",
    "save_checkpoint": "autolabel.models.checkpoints",
    "decode_prompts": "autolabel.models.efficientvit_sam.inference",
    "encode_images": "autolabel.models.efficientvit_sam.inference",
    "segment_boxes": "autolabel.models.efficientvit_sam.inference",
    "segment_boxes_batch": "autolabel.models.efficientvit_sam.inference",
    "optimize_for_inference": "autolabel.models.efficientvit_sam.optimize",
    "prepare_for_inference": "autolabel.models.efficientvit_sam.optimize",
    "EfficientViTSam": "autolabel.models.efficientvit_sam.sam",
    "SamPredictor": "autolabel.models.predictor",
    "MODEL_SPECS": "autolabel.models.registry",
    "DetectorSpec": "autolabel.models.registry",
    "SegmenterSpec": "autolabel.models.registry",
    "create_model": "autolabel.models.registry",
    "get_spec": "autolabel.models.registry",
    "ImageEmbedding": "autolabel.models.types",
    "MaskSet": "autolabel.models.types",
}

__all__ = [
    "MODEL_SPECS",
    "DetectorSpec",
    "EfficientViTSam",
    "ImageEmbedding",
    "MaskSet",
    "SamPredictor",
    "SegmenterSpec",
    "create_model",
    "decode_prompts",
    "encode_images",
    "get_spec",
    "load_checkpoint",
    "optimize_for_inference",
    "prepare_for_inference",
    "save_checkpoint",
    "segment_boxes",
    "segment_boxes_batch",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)
