"""Torch preprocessing on a device: bit-exact with the numpy/PIL host path (tolerance 0).

`resize_like_pil` repeats Pillow's fixed-point bilinear resampling, so every comparison here is
exact equality: the resized uint8 pixels, the normalised (B, 3, S, S) float32 encoder input (and
the official input tensor's SHA-256 from the parity fixtures), the GroundingDINO pixel values and
the embeddings `encode_images` makes from either path. The logic is device-independent and runs
on the CPU here; the `gpu` tests repeat the key checks on CUDA.
"""

import copy
import hashlib
from collections.abc import Callable
from functools import cache
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from autolabel.models.efficientvit_sam.inference import encode_images
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.preprocess import (
    resized_hw,
    to_pixel_values,
    to_pixel_values_batch,
)
from autolabel.models.registry import create_model
from autolabel.models.transforms import (
    pil_resizes_vertically_first,
    preprocess_image,
    preprocess_images_torch,
    resize_like_pil,
    stage_images,
    validate_image,
)
from tests.unit.models.helpers import FIXTURES_DIR, load_script

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
#: (H, W) -> (h, w) pairs: downscales up to 4x, upscales, one axis only, 1-pixel sides, and
#: both of Pillow 13's pass orders (vertical first when the height shrinks > 2x the width).
RESIZES = [
    ((480, 640), (384, 512)),
    ((480, 640), (768, 1024)),
    ((1000, 750), (512, 384)),
    ((900, 200), (512, 114)),
    ((300, 1700), (90, 512)),
    ((50, 70), (366, 512)),
    ((61, 63), (6, 52)),
    ((40, 73), (16, 55)),
    ((1, 7), (73, 512)),
    ((9, 1), (512, 57)),
    ((64, 100), (64, 37)),
    ((100, 64), (23, 64)),
]


def random_image(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (*hw, 3), dtype=np.uint8)


def pil_resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    resized = Image.fromarray(image).resize(size_hw[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized)


@pytest.mark.parametrize(("in_hw", "out_hw"), RESIZES)
def test_resize_like_pil_is_bit_exact(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(in_hw) + sum(out_hw))
    batch = [random_image(rng, in_hw) for _ in range(2)]
    got = resize_like_pil(torch.from_numpy(np.stack(batch)), out_hw)
    assert got.dtype == torch.uint8
    for image, resized in zip(batch, got, strict=True):
        np.testing.assert_array_equal(resized.numpy(), pil_resize(image, out_hw))


def test_resize_like_pil_matches_pil_on_random_sizes() -> None:
    rng = np.random.default_rng(7)
    for _ in range(150):
        in_hw = (int(rng.integers(1, 120)), int(rng.integers(1, 120)))
        out_hw = (int(rng.integers(1, 160)), int(rng.integers(1, 160)))
        image = random_image(rng, in_hw)
        got = resize_like_pil(torch.from_numpy(image)[None], out_hw)[0].numpy()
        np.testing.assert_array_equal(got, pil_resize(image, out_hw), err_msg=f"{in_hw}->{out_hw}")


def test_pass_order_follows_pillow() -> None:
    assert not pil_resizes_vertically_first((480, 640), (384, 512))
    assert pil_resizes_vertically_first((61, 63), (6, 52))  # height shrinks 55, width 11
    assert not pil_resizes_vertically_first((40, 73), (16, 55))  # 24 <= 2 * 18


def test_stage_images_copies_read_only_arrays_into_one_buffer() -> None:
    rng = np.random.default_rng(0)
    images = [random_image(rng, (5, 7)), random_image(rng, (3, 2))]
    images[0].flags.writeable = False
    staged = stage_images(images, CPU)
    assert [tuple(t.shape) for t in staged] == [(5, 7, 3), (3, 2, 3)]
    assert staged[0].untyped_storage().data_ptr() == staged[1].untyped_storage().data_ptr()
    for image, tensor in zip(images, staged, strict=True):
        np.testing.assert_array_equal(tensor.numpy(), image)


def host_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    return torch.stack([preprocess_image(validate_image(im), size) for im in images])


@pytest.mark.parametrize("size", [512, 1024])
def test_batched_torch_preprocessing_equals_the_host_path(size: int) -> None:
    rng = np.random.default_rng(size)
    shapes = [(480, 640), (640, 480), (480, 640), (size, 300), (37, 1500), (512, 512)]
    images = [random_image(rng, hw) for hw in shapes]
    images.append(np.ascontiguousarray(images[0][:, :, 0]))  # grayscale, as validate makes it
    checked = [validate_image(im) for im in images]
    got = preprocess_images_torch(stage_images(checked, CPU), size)
    assert got.shape == (len(images), 3, size, size)
    assert got.dtype == torch.float32
    assert torch.equal(got, host_batch(images, size))


def test_torch_preprocessing_rejects_an_empty_batch() -> None:
    with pytest.raises(InvalidInputError, match="at least one image"):
        preprocess_images_torch([], 512)


@cache
def reduction() -> ModuleType:
    return load_script(FIXTURES_DIR / "parity" / "reduce.py", "parity_reduce")


@pytest.mark.parametrize(("variant", "size"), [("l0", 512), ("xl0", 1024)])
def test_torch_preprocessing_reproduces_the_official_input_tensor(variant: str, size: int) -> None:
    ref = reduction().load_reference(FIXTURES_DIR / "parity" / f"ref_{variant}.npz")
    x = preprocess_images_torch(stage_images([ref["image"]], CPU), size).numpy()
    assert x.shape == tuple(ref["input_tensor_shape"])
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    assert digest == str(ref["input_tensor_sha256"])


@pytest.fixture(scope="module")
def tiny_model() -> EfficientViTSam:
    torch.manual_seed(0)
    return create_model("efficientvit-sam-test", family="segmenter")


def test_encode_images_gives_the_same_embeddings_from_either_path(
    tiny_model: EfficientViTSam,
) -> None:
    rng = np.random.default_rng(3)
    images = [random_image(rng, hw) for hw in [(50, 70), (70, 50), (50, 70), (33, 90), (64, 64)]]
    host = encode_images(tiny_model, images, batch_size=2, preprocess="host")
    device = encode_images(tiny_model, images, batch_size=2, preprocess="torch")
    assert [e.original_size for e in device] == [e.original_size for e in host]
    for got, want in zip(device, host, strict=True):
        assert torch.equal(got.embedding, want.embedding)


def test_grounding_dino_batch_equals_one_image_at_a_time() -> None:
    rng = np.random.default_rng(5)
    images = [random_image(rng, hw) for hw in [(96, 128), (90, 120), (96, 128), (48, 64)]]
    size_hw = resized_hw((96, 128), 64, 128)
    assert {resized_hw(im.shape[:2], 64, 128) for im in images} == {size_hw}
    got = to_pixel_values_batch(images, size_hw, "cpu")
    assert torch.equal(got, torch.stack([to_pixel_values(im, size_hw) for im in images]))


def test_grounding_dino_batch_checks_its_images() -> None:
    with pytest.raises(InvalidInputError, match="uint8"):
        to_pixel_values_batch([np.zeros((4, 4, 3), dtype=np.float32)], (4, 4), "cpu")
    with pytest.raises(InvalidInputError, match="at least one image"):
        to_pixel_values_batch([], (4, 4), "cpu")


def on_cuda(check: Callable[[torch.device], None]) -> None:
    check(torch.device("cuda"))
    torch.cuda.synchronize()


@pytest.mark.gpu
def test_cuda_preprocessing_is_bit_exact() -> None:
    rng = np.random.default_rng(11)
    images = [random_image(rng, hw) for hw in [(480, 640), (1000, 750), (50, 70), (480, 640)]]

    def check(device: torch.device) -> None:
        for size in (512, 1024):
            got = preprocess_images_torch(stage_images(images, device), size)
            assert got.device.type == "cuda"
            assert torch.equal(got.cpu(), host_batch(images, size))
        size_hw = resized_hw((480, 640), 800, 1333)
        pixels = to_pixel_values_batch([images[0], images[3]], size_hw, device)
        want = torch.stack([to_pixel_values(im, size_hw) for im in (images[0], images[3])])
        assert torch.equal(pixels.cpu(), want)

    on_cuda(check)


@pytest.mark.gpu
def test_cuda_encode_images_overlapped_copies_match_the_host_path(
    tiny_model: EfficientViTSam,
) -> None:
    model = copy.deepcopy(tiny_model).to("cuda")
    rng = np.random.default_rng(4)
    images = [random_image(rng, (int(rng.integers(40, 400)), 300)) for _ in range(11)]
    host = encode_images(model, images, batch_size=4, preprocess="host")
    device = encode_images(model, images, batch_size=4)  # "auto": torch on CUDA, side stream
    for got, want in zip(device, host, strict=True):
        torch.testing.assert_close(got.embedding, want.embedding, rtol=0, atol=1e-5)
