"""GroundingDINO backend on the tiny random configuration: forward, batching, chunking, loading."""

import dataclasses

import numpy as np
import pytest
import torch
from transformers import BertTokenizer, GroundingDinoForObjectDetection

from autolabel.models.box_ops import cxcywh_norm_to_xyxy_px
from autolabel.models.detection import DetectionConfig, Detections
from autolabel.models.errors import InvalidInputError, UnknownModelError
from autolabel.models.grounding_dino import (
    GroundingDinoDetector,
    InferenceOptions,
    build_detector,
    load_tokenizer,
    tiny_test_config,
)
from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.preprocess import resized_hw, to_pixel_values
from autolabel.models.grounding_dino.runtime import TorchImageSide
from autolabel.models.grounding_dino.text import encode_text
from autolabel.models.prompts import PromptSet
from autolabel.models.registry import get_spec
from tests.unit.models.helpers import VOCAB_DIR

# Keep every query: no thresholds, no suppression, no limit below the 30 queries.
KEEP_ALL = DetectionConfig(
    box_threshold=0.0,
    text_threshold=0.0,
    nms_iou=1.0,
    duplicate_policy="keep_both",
    duplicate_iou=1.0,
    max_detections=1000,
)
OPTIONS = InferenceOptions(min_size=64, max_size=128, max_batch_size=4)


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    return load_tokenizer(VOCAB_DIR)


@pytest.fixture(scope="module")
def model() -> GroundingDinoForObjectDetection:
    torch.manual_seed(0)
    return build_detector(tiny_test_config())


def images(*shapes: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def sorted_rows(det: Detections) -> np.ndarray:
    rows = np.concatenate([det.boxes_xyxy_px, det.scores[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize(
    ("image_hw", "expected"),
    [
        ((480, 640), (800, 1066)),
        ((800, 1333), (800, 1333)),
        ((600, 1700), (470, 1331)),  # transformers' processor gives 470x1333 here
        ((1700, 600), (1331, 470)),
        ((1080, 1920), (750, 1333)),
    ],
)
def test_resize_follows_the_original_formula(
    image_hw: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resized_hw(image_hw, 800, 1333) == expected


def test_image_forward_equals_the_transformers_forward(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer
) -> None:
    input_ids = torch.tensor([tokenizer("a cat . remote control .")["input_ids"]])
    pixels = torch.stack([to_pixel_values(im, (64, 96)) for im in images((64, 96), (64, 96))])
    with torch.inference_mode():
        logits, boxes = image_forward(model, pixels, encode_text(model, input_ids))
        reference = model(pixel_values=pixels, input_ids=input_ids.expand(2, -1))
    torch.testing.assert_close(logits, reference.logits[..., : input_ids.shape[1]])
    torch.testing.assert_close(boxes, reference.pred_boxes)


def detector(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer, **options: object
) -> GroundingDinoDetector:
    runtime = dataclasses.replace(OPTIONS, **options)  # type: ignore[arg-type]
    return GroundingDinoDetector(model, tokenizer, KEEP_ALL, runtime)


def test_batched_path_equals_one_image_path_for_the_same_resized_shape(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer
) -> None:
    batch = images((96, 128), (90, 120), (48, 64))  # all resize to 64x85
    assert len({resized_hw(im.shape[:2], 64, 128) for im in batch}) == 1
    prompt = PromptSet.from_categories(["cat", "remote control"])
    together = detector(model, tokenizer, max_batch_size=4).detect(batch, prompt)
    alone = detector(model, tokenizer, max_batch_size=1).detect(batch, prompt)
    for a, b in zip(together, alone, strict=True):
        assert len(a) == 30
        np.testing.assert_allclose(sorted_rows(a), sorted_rows(b), atol=1e-4)


def test_mixed_sizes_keep_input_order_and_match_single_calls(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer
) -> None:
    batch = images((64, 160), (96, 128), (128, 64), (90, 120))
    prompt = PromptSet.from_categories(["cat"])
    det = detector(model, tokenizer)
    together = det.detect(batch, prompt)
    assert [d.image_hw for d in together] == [(64, 160), (96, 128), (128, 64), (90, 120)]
    for image, result in zip(batch, together, strict=True):
        (single,) = det.detect([image], prompt)
        np.testing.assert_allclose(sorted_rows(result), sorted_rows(single), atol=1e-4)


def test_boxes_are_in_original_pixels_of_a_non_square_image(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer
) -> None:
    (image,) = images((60, 150))
    prompt = PromptSet.from_categories(["cat"])
    (result,) = detector(model, tokenizer).detect([image], prompt)
    size = resized_hw((60, 150), 64, 128)
    text = encode_text(model, torch.tensor([tokenizer("cat .")["input_ids"]]))
    with torch.inference_mode():
        _, boxes = image_forward(model, to_pixel_values(image, size)[None], text)
    expected = cxcywh_norm_to_xyxy_px(boxes[0], (60, 150)).numpy()
    got = result.boxes_xyxy_px
    np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])])
    assert got[:, [0, 2]].max() <= 150
    assert got[:, [1, 3]].max() <= 60


def test_long_prompt_runs_per_chunk_and_merges(tokenizer: BertTokenizer) -> None:
    torch.manual_seed(1)
    config = tiny_test_config()
    config.max_text_len = 12  # "[CLS] a . b . c . [SEP]"-sized captions force chunking
    small = build_detector(config)
    names = ["cat", "dog", "remote control", "forklift", "pallet", "person"]
    det = detector(small, tokenizer)
    prompt = PromptSet.from_categories(names)
    chunks = det.chunks(prompt)
    assert len(chunks) > 1
    assert all(len(c.input_ids) <= 12 for c in chunks)
    batch = images((64, 96), (80, 120))
    merged = det.detect(batch, prompt)
    assert det.text_cache.misses == len(chunks)
    det.detect(batch, prompt)
    assert det.text_cache.misses == len(chunks)  # text features are cached across calls
    for chunk in chunks:
        part = PromptSet.from_categories([names[i] for i in chunk.phrase_indices])
        alone = det.detect(batch, part)
        for whole, piece in zip(merged, alone, strict=True):
            mine = np.isin(whole.category_names, part.categories)
            rows = np.concatenate([whole.boxes_xyxy_px, whole.scores[:, None]], 1)[mine]
            np.testing.assert_allclose(
                rows[np.lexsort(rows.T[::-1])], sorted_rows(piece), atol=1e-5
            )


def test_bf16_autocast_runs_on_cpu(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer
) -> None:
    prompt = PromptSet.from_categories(["cat"])
    (fp32,) = detector(model, tokenizer).detect(images((64, 96)), prompt)
    side = TorchImageSide(model, precision="bf16")
    bf16_detector = GroundingDinoDetector(model, tokenizer, KEEP_ALL, OPTIONS, side)
    (bf16,) = bf16_detector.detect(images((64, 96)), prompt)
    assert bf16.scores.dtype == np.float32
    assert np.isfinite(bf16.boxes_xyxy_px).all()
    assert abs(float(bf16.scores.max()) - float(fp32.scores.max())) < 0.1


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        (np.zeros((10, 10), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 10, 3), dtype=np.uint8), r"\(H, W, 3\)"),
    ],
)
def test_bad_images_are_rejected(
    model: GroundingDinoForObjectDetection,
    tokenizer: BertTokenizer,
    image: np.ndarray,
    message: str,
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        detector(model, tokenizer).detect([image], PromptSet.from_categories(["cat"]))


def test_fp16_needs_cuda(model: GroundingDinoForObjectDetection) -> None:
    with pytest.raises(InvalidInputError, match="CUDA"):
        TorchImageSide(model, precision="fp16", device="cpu")


def test_unknown_detector_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="grounding-dino-swint-ogc"):
        get_spec("grounding-dino-huge", family="detector")
