"""ShardLabeler: failures recorded with reasons, no encoder work without boxes, valid RLE rows."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
import torch

from autolabel.models.detection import Detections
from autolabel.models.registry import create_model
from autolabel.models.runtime.adaptive import AdaptiveBatcher
from autolabel.storage.db.tables import ResultStatus
from autolabel.storage.images import decode_image
from autolabel.storage.rle import Rle, decode_rle
from autolabel.tasks.labeling import shard as labeling
from autolabel.tasks.labeling.shard import (
    BoxSource,
    Fetched,
    ImageRef,
    RejectedBoxes,
    ShardLabeler,
)


class OneBoxPerBrightImage(BoxSource):
    """A box in the middle of images whose mean is above 100, none otherwise."""

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections | RejectedBoxes]:
        out: list[Detections | RejectedBoxes] = []
        for image in images:
            h, w = image.shape[:2]
            n = int(image.mean() > 100)
            out.append(
                Detections(
                    image_hw=(h, w),
                    boxes_xyxy_px=np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]] * n, np.float32),
                    scores=np.full(n, 0.7, np.float32),
                    category_ids=np.zeros(n, np.int64),
                    category_names=("thing",) * n,
                    phrases=("thing",) * n,
                    token_scores=tuple(np.ones(1, np.float32) for _ in range(n)),
                    duplicate_of=np.full(n, -1, np.int64),
                )
            )
        return out


def fetched(image_id: int, value: int) -> Fetched:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(np.full((40, 60, 3), value, np.uint8)).save(buffer, "PNG")
    return Fetched(
        ImageRef(image_id, f"file:///x/{image_id}.png", "etag"), decode_image(buffer.getvalue())
    )


@pytest.fixture(scope="module")
def labeler_parts() -> tuple[torch.nn.Module, AdaptiveBatcher]:
    torch.manual_seed(0)
    return create_model("efficientvit-sam-test"), AdaptiveBatcher(4)


def make_labeler(parts: tuple[torch.nn.Module, AdaptiveBatcher]) -> ShardLabeler:
    model, batcher = parts
    return ShardLabeler(
        box_source=OneBoxPerBrightImage(),
        segmenter=model,  # type: ignore[arg-type]
        category_ids={"thing": 5},
        model_version="test@random",
        batcher=batcher,
        detect_batcher=AdaptiveBatcher(4),
    )


def test_outcomes_in_order_with_failures_and_empty_images(
    labeler_parts: tuple[torch.nn.Module, AdaptiveBatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[int] = []
    real = labeling.segment_boxes_batch

    def counting(model: object, images: list[object], boxes: list[object], **kw: object) -> object:
        encoded.append(len(images))
        return real(model, images, boxes, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(labeling, "segment_boxes_batch", counting)
    labeler = make_labeler(labeler_parts)
    batch = [
        fetched(1, 200),
        Fetched(ImageRef(2, "file:///x/2.jpg", "e"), failure="truncated"),
        fetched(3, 10),  # dark: no boxes
        fetched(4, 220),
    ]
    outcomes = labeler.finish(labeler.infer(batch))
    assert [o.image_id for o in outcomes] == [1, 2, 3, 4]
    assert [o.status for o in outcomes] == [
        ResultStatus.DONE, ResultStatus.FAILED, ResultStatus.DONE, ResultStatus.DONE,
    ]  # fmt: skip
    assert outcomes[1].failure_reason == "truncated"
    assert labeler.failures == {"truncated": 1}
    assert outcomes[2].annotations == ()
    assert encoded == [2]  # only the two images with boxes reached the encoder
    assert len(outcomes[0].annotations) + len(outcomes[3].annotations) > 0
    for outcome in (outcomes[0], outcomes[3]):
        for ann in outcome.annotations:
            mask = decode_rle(Rle(size=[ann.seg_height, ann.seg_width], counts=ann.seg_counts))
            assert mask.shape == (40, 60)
            assert ann.area == mask.sum() > 0
            x, y, w, h = ann.bbox_xywh_px
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == (
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            )
            assert ann.category_id == 5
            assert ann.model_version == "test@random"
            assert 0.0 <= (ann.stability_score or 0.0) <= 1.0
            # the detector's box (the middle half of the 40 x 60 image) against the mask's box
            ix = max(0.0, min(x + w, 45.0) - max(x, 15.0))
            iy = max(0.0, min(y + h, 30.0) - max(y, 10.0))
            inter = ix * iy
            assert ann.box_iou == pytest.approx(inter / (w * h + 30.0 * 20.0 - inter), abs=1e-5)


def test_detector_out_of_memory_halves_its_batch(
    labeler_parts: tuple[torch.nn.Module, AdaptiveBatcher],
) -> None:
    sizes: list[int] = []

    class SmallDevice(OneBoxPerBrightImage):
        def boxes(
            self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
        ) -> list[Detections]:
            sizes.append(len(images))
            if len(images) > 1:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return super().boxes(refs, images)

    labeler = make_labeler(labeler_parts)
    labeler.box_source = SmallDevice()
    outcomes = labeler.finish(labeler.infer([fetched(i, 200) for i in range(4)]))
    assert [o.status for o in outcomes] == [ResultStatus.DONE] * 4
    assert sizes == [4, 2, 1, 1, 1, 1]
    assert labeler.detect_batcher.batch_size == 1
