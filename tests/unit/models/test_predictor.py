"""SamPredictor and the batched API on the tiny random-init test model."""

import threading

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from autolabel.models.efficientvit_sam.inference import (
    encode_images,
    segment_boxes,
    segment_boxes_batch,
)
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import ImageNotSetError, InvalidInputError
from autolabel.models.predictor import Prediction, SamPredictor
from autolabel.models.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> EfficientViTSam:
    torch.manual_seed(0)
    return create_model("efficientvit-sam-test")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(48, 64), (70, 40), (64, 64)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


@pytest.fixture
def predictor(model: EfficientViTSam, images: list[np.ndarray]) -> SamPredictor:
    predictor = SamPredictor(model)
    predictor.set_image(images[0])
    return predictor


BOX = np.array([5.0, 6.0, 40.0, 30.0])


def test_predict_shapes_and_dtypes(predictor: SamPredictor) -> None:
    masks, iou, low_res = predictor.predict(box=BOX, multimask_output=True)
    assert masks.shape == (3, 48, 64)
    assert masks.dtype == np.bool_
    assert iou.shape == (3,)
    assert iou.dtype == np.float32
    assert low_res.shape == (3, 256, 256)
    logits, _, _ = predictor.predict(box=BOX, multimask_output=False, return_logits=True)
    assert logits.shape == (1, 48, 64)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, predictor.predict(box=BOX, multimask_output=False)[0])
    # The low-res logits feed back as mask_input.
    masks2, _, _ = predictor.predict(box=BOX, mask_input=low_res[:1], multimask_output=False)
    assert masks2.shape == (1, 48, 64)


def test_reset_and_thread_local_state(predictor: SamPredictor) -> None:
    assert predictor.is_image_set
    predictor.reset_image()
    with pytest.raises(ImageNotSetError):
        predictor.predict(box=BOX)
    with pytest.raises(ImageNotSetError):
        predictor.get_image_embedding()


def test_grayscale_is_converted_and_bgr_is_flipped(
    model: EfficientViTSam, images: list[np.ndarray]
) -> None:
    predictor = SamPredictor(model)
    gray = images[0][:, :, 0]
    predictor.set_image(gray)
    from_gray = predictor.get_image_embedding()
    predictor.set_image(np.repeat(gray[:, :, None], 3, axis=2))
    assert torch.equal(from_gray, predictor.get_image_embedding())
    predictor.set_image(np.ascontiguousarray(images[0][:, :, ::-1]), image_format="BGR")
    from_bgr = predictor.get_image_embedding()
    predictor.set_image(images[0])
    assert torch.equal(from_bgr, predictor.get_image_embedding())


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "RGBA"),
        (np.zeros((8, 8, 3, 1), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "non-empty"),
        ([[0, 1], [2, 3]], "numpy"),
    ],
    ids=["float", "rgba", "rank4", "empty", "list"],
)
def test_bad_images_raise(model: EfficientViTSam, image: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        SamPredictor(model).set_image(image)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"box": [30.0, 6.0, 5.0, 30.0]}, "x0 <= x1"),
        ({"box": [5.0, 6.0, np.nan, 30.0]}, "finite"),
        ({"box": [100.0, 100.0, 120.0, 120.0]}, "entirely outside"),
        ({"box": np.zeros((0, 4))}, "one xyxy box"),
        ({"box": [1.0, 2.0, 3.0]}, r"\(N, 4\)"),
        ({"point_coords": [[1.0, np.inf]], "point_labels": [1]}, "finite"),
        ({"point_coords": [[1.0, 2.0]]}, "point_labels"),
        ({"point_coords": [[1.0, 2.0]], "point_labels": [1, 0]}, r"\(1,\) point labels"),
        ({"point_coords": [[1.0, 2.0]], "point_labels": [7]}, "labels in"),
        ({"mask_input": np.zeros((256, 256))}, "mask_input of shape"),
        ({}, "at least one prompt"),
    ],
    ids=[
        "inverted",
        "nan-box",
        "outside",
        "empty-box",
        "short-box",
        "inf-point",
        "no-labels",
        "label-count",
        "bad-label",
        "mask-shape",
        "no-prompt",
    ],
)
def test_bad_prompts_raise(predictor: SamPredictor, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        predictor.predict(**kwargs)  # type: ignore[arg-type]


def test_predict_torch_rejects_malformed_prompts(predictor: SamPredictor) -> None:
    with pytest.raises(InvalidInputError, match="finite"):
        predictor.predict_torch(None, None, boxes=torch.tensor([[0.0, 0.0, float("nan"), 4.0]]))
    with pytest.raises(InvalidInputError, match="B >= 1"):
        predictor.predict_torch(None, None, boxes=torch.zeros(0, 4))
    with pytest.raises(InvalidInputError, match=r"\(B, N, 2\)"):
        predictor.predict_torch(torch.zeros(3, 2), torch.ones(3))
    with pytest.raises(InvalidInputError, match="point_labels of shape"):
        predictor.predict_torch(torch.zeros(3, 1, 2), torch.ones(3))
    with pytest.raises(InvalidInputError, match="one batch size"):
        predictor.predict_torch(torch.zeros(3, 1, 2), torch.ones(3, 1), boxes=torch.ones(2, 4))
    with pytest.raises(InvalidInputError, match="mask_input of shape"):
        predictor.predict_torch(
            None, None, boxes=torch.ones(1, 4), mask_input=torch.zeros(1, 64, 64)
        )


def test_box_sticking_out_is_clipped(predictor: SamPredictor) -> None:
    clipped = predictor.predict(box=[-10.0, 6.0, 40.0, 90.0], multimask_output=False)
    inside = predictor.predict(box=[0.0, 6.0, 40.0, 48.0], multimask_output=False)
    for got, expected in zip(clipped, inside, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_batched_api_equals_per_image_predict(
    model: EfficientViTSam, images: list[np.ndarray]
) -> None:
    boxes = [
        np.array([[5.0, 6.0, 40.0, 30.0], [0.0, 0.0, 63.0, 47.0]]),
        np.array([[2.0, 3.0, 30.0, 60.0]]),
        np.zeros((0, 4)),
    ]
    results = segment_boxes_batch(model, images, boxes, batch_size=2)
    predictor = SamPredictor(model)
    for image, image_boxes, result in zip(images, boxes, results, strict=True):
        assert len(result) == len(image_boxes)
        assert result.masks.shape == (len(image_boxes), *image.shape[:2])
        predictor.set_image(image)
        for i, box in enumerate(image_boxes):
            masks, iou, low_res = predictor.predict(box=box, multimask_output=False)
            np.testing.assert_allclose(result.low_res_logits[i], low_res[0], atol=1e-5, rtol=0)
            np.testing.assert_allclose(result.iou_predictions[i], iou[0], atol=1e-5, rtol=0)
            np.testing.assert_array_equal(result.masks[i], masks[0])


def test_mask_set_is_rle_ready_without_copies(
    model: EfficientViTSam, images: list[np.ndarray]
) -> None:
    boxes = np.array([[5.0, 6.0, 40.0, 30.0], [0.0, 0.0, 63.0, 47.0]])
    result = segment_boxes(model, encode_images(model, images[:1])[0], boxes)
    assert result.masks_fortran.flags.f_contiguous
    assert result.masks_fortran.dtype == np.uint8
    assert result.masks_fortran.shape == (48, 64, 2)
    assert np.shares_memory(result.masks, result.masks_fortran)
    rles = mask_utils.encode(result.masks_fortran)
    dense = np.asfortranarray(np.stack(list(result.masks), axis=-1).astype(np.uint8))
    assert rles == mask_utils.encode(dense)
    np.testing.assert_array_equal(mask_utils.area(rles), result.masks.sum(axis=(1, 2)))


def test_multimask_output_keeps_the_best_iou_mask(
    model: EfficientViTSam, images: list[np.ndarray]
) -> None:
    embedding = encode_images(model, images[:1])[0]
    result = segment_boxes(model, embedding, BOX[None], multimask_output=True)
    predictor = SamPredictor(model)
    predictor.set_embedding(embedding)
    masks, iou, _ = predictor.predict(box=BOX, multimask_output=True)
    best = int(np.argmax(iou))
    assert result.iou_predictions[0] == pytest.approx(iou[best], abs=1e-6)
    np.testing.assert_array_equal(result.masks[0], masks[best])


def test_chunked_decoding_equals_one_call(model: EfficientViTSam, images: list[np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 40, (20, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 24, (20, 2))], axis=1)
    embedding = encode_images(model, images[:1])[0]
    one_call = segment_boxes(model, embedding, boxes, max_boxes_per_call=64)
    chunked = segment_boxes(model, embedding, boxes, max_boxes_per_call=7)
    assert len(one_call) == 20
    np.testing.assert_allclose(chunked.low_res_logits, one_call.low_res_logits, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(chunked.masks, one_call.masks)
    np.testing.assert_array_equal(one_call.boxes_xyxy_px, np.clip(boxes, 0, [64, 48, 64, 48]))


@pytest.mark.parametrize("multimask_output", [False, True])
def test_shared_image_decoding_equals_segment_anything(
    model: EfficientViTSam, images: list[np.ndarray], multimask_output: bool
) -> None:
    embedding = encode_images(model, images[:1])[0].embedding
    boxes = torch.tensor([[10.0, 20.0, 400.0, 500.0], [0.0, 0.0, 1000.0, 700.0]])
    points = (torch.tensor([[[100.0, 200.0]], [[600.0, 300.0]]]), torch.tensor([[1], [0]]))
    with torch.inference_mode():
        got = model.decode(
            embedding,
            points=points,
            boxes=boxes,
            mask_input=None,
            multimask_output=multimask_output,
        )
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
        expected = model.mask_decoder(
            image_embeddings=embedding,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)


def test_batch_rejects_bad_boxes_before_encoding(
    model: EfficientViTSam, images: list[np.ndarray]
) -> None:
    boxes = [BOX[None], np.array([[10.0, 10.0, 5.0, 20.0]]), BOX[None]]
    with pytest.raises(InvalidInputError, match="image 1"):
        segment_boxes_batch(model, images, boxes)
    with pytest.raises(InvalidInputError, match="one box array per image"):
        segment_boxes_batch(model, images, boxes[:2])


def test_threads_sharing_one_predictor_get_their_own_results(
    model: EfficientViTSam, images: list[np.ndarray]
) -> None:
    shared = SamPredictor(model)
    expected = []
    for image in images:
        shared.set_image(image)
        expected.append(shared.predict(box=[1.0, 2.0, 30.0, 40.0], multimask_output=True))
    shared.reset_image()
    results: dict[int, list[Prediction]] = {}
    barrier = threading.Barrier(len(images))

    def work(index: int) -> None:
        barrier.wait()
        outs = []
        for _ in range(3):
            shared.set_image(images[index])
            outs.append(shared.predict(box=[1.0, 2.0, 30.0, 40.0], multimask_output=True))
        results[index] = outs

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(len(images)))
    for index, outs in results.items():
        for out in outs:
            for got, want in zip(out, expected[index], strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
