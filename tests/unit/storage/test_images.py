"""decode_image: the bad-image corpus, conversion rules, orientation, pixel limit, draft mode."""

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from autolabel.storage.errors import InvalidImageError
from autolabel.storage.images import DecodedImage, decode_image, read_image_size
from tests.corpus import (
    ROTATED_STORED_WH,
    Expected,
    bomb_png,
    photo_like,
    png_chunk,
    write_bad_image_corpus,
    write_good_images,
)

REASONS = {
    "empty",
    "not_an_image",
    "unsupported_format",
    "too_many_pixels",
    "truncated",
    "unsupported_mode",
    "corrupt",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Expected]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_bad_image_corpus(folder)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _decode_file(folder: Path, name: str, **kwargs: object) -> DecodedImage:
    return decode_image((folder / name).read_bytes(), **kwargs)  # type: ignore[arg-type]


def test_corpus_gives_documented_results(corpus: tuple[Path, dict[str, Expected]]) -> None:
    folder, expected = corpus
    assert len(expected) >= 17
    for name, outcome in expected.items():
        data = (folder / name).read_bytes()
        if outcome.reason is None:
            decoded = decode_image(data)
            assert decoded.original_size == outcome.original_size, name
            assert decoded.rgb.shape == (*outcome.original_size, 3), name  # type: ignore[misc]
            assert decoded.rgb.dtype == np.uint8, name
            assert decoded.rgb.flags.c_contiguous, name
            assert decoded.scale == 1.0
        else:
            assert outcome.reason in REASONS
            with pytest.raises(InvalidImageError) as info:
                decode_image(data)
            assert info.value.reason == outcome.reason, (name, info.value.detail)


def test_corpus_outcome_ignores_process_warning_settings(
    corpus: tuple[Path, dict[str, Expected]],
) -> None:
    folder, expected = corpus
    huge = _bomb_between_pil_limits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidImageError) as info:
            decode_image(huge, max_pixels=10**9)
        for name, outcome in expected.items():
            result = _outcome((folder / name).read_bytes())
            reason = result if isinstance(result, str) else None
            assert reason == outcome.reason, name
    assert info.value.reason == "too_many_pixels"


def _bomb_between_pil_limits() -> bytes:
    """A header above PIL's warning limit (89.5 MP) but below its hard limit (179 MP)."""
    return bomb_png(10_000, 10_000)


def test_bomb_is_rejected_from_the_header(corpus: tuple[Path, dict[str, Expected]]) -> None:
    folder, _ = corpus
    data = (folder / "bomb_20000x20000.png").read_bytes()
    assert len(data) < 200
    with pytest.raises(InvalidImageError) as info:
        read_image_size(data)
    assert info.value.reason == "too_many_pixels"


def test_own_pixel_limit_applies_below_pils() -> None:
    data = bomb_png(2_000, 1_000)
    with pytest.raises(InvalidImageError, match="at most 1000000 pixels, got 2000x1000") as info:
        decode_image(data, max_pixels=1_000_000)
    assert info.value.reason == "too_many_pixels"
    small = _encode(Image.new("RGB", (64, 48)), "PNG")
    assert decode_image(small, max_pixels=64 * 48).original_size == (48, 64)
    with pytest.raises(InvalidImageError):
        decode_image(small, max_pixels=64 * 48 - 1)


def test_exif_rotation_swaps_size_and_rotates_pixels(
    corpus: tuple[Path, dict[str, Expected]],
) -> None:
    folder, _ = corpus
    data = (folder / "rotated.jpg").read_bytes()
    decoded = decode_image(data)
    width, height = ROTATED_STORED_WH
    assert decoded.original_size == (width, height)
    assert read_image_size(data) == (width, height)
    # Stored: red block in the top-left corner. Orientation 6 means "rotate 90 degrees
    # clockwise to display", which puts the block in the top-right corner.
    top_right = decoded.rgb[2, -3].astype(int)
    top_left = decoded.rgb[2, 2].astype(int)
    assert top_right[0] > 200
    assert top_right[2] < 60
    assert top_left[2] > 200
    assert top_left[0] < 60
    reference = np.asarray(ImageOps.exif_transpose(Image.open(BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(decoded.rgb, reference)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pil_exif_transpose(orientation: int) -> None:
    image = photo_like(np.random.default_rng(orientation), 20, 12)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(image, "PNG", exif=exif.tobytes())
    reference = np.asarray(ImageOps.exif_transpose(Image.open(BytesIO(data))).convert("RGB"))
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded.rgb, reference)
    assert decoded.original_size == reference.shape[:2]


def test_sixteen_bit_and_float_scaling_rules(corpus: tuple[Path, dict[str, Expected]]) -> None:
    folder, _ = corpus
    raw16 = np.asarray(Image.open(folder / "gray16.png")).astype(np.int64)
    decoded16 = _decode_file(folder, "gray16.png").rgb
    np.testing.assert_array_equal(decoded16[..., 0], np.floor(raw16 / 257 + 0.5).astype(np.uint8))
    assert (decoded16[..., 0] == decoded16[..., 2]).all()
    assert raw16.max() > 60_000  # the rule is exercised over most of the 16-bit range

    raw_f = np.asarray(Image.open(folder / "float.tif"), dtype=np.float64)
    decoded_f = _decode_file(folder, "float.tif").rgb[..., 0]
    np.testing.assert_array_equal(decoded_f, np.rint(np.clip(raw_f, 0, 1) * 255).astype(np.uint8))
    assert decoded_f.min() == 0
    assert decoded_f.max() == 255

    raw_i = np.asarray(Image.open(folder / "int32.tif")).astype(np.int64)
    decoded_i = _decode_file(folder, "int32.tif").rgb[..., 1]
    expected_i = np.floor(np.clip(raw_i, 0, 65535) / 257 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(decoded_i, expected_i)
    assert raw_i.min() < 0
    assert raw_i.max() > 65535


def test_transparency_is_composited_on_background(
    corpus: tuple[Path, dict[str, Expected]],
) -> None:
    folder, _ = corpus
    rgb = _decode_file(folder, "palette_transparent.png", background=(10, 20, 30)).rgb
    assert (rgb[:, :8] == (10, 20, 30)).all()  # palette index 0: fully transparent
    assert (rgb[:, 8:] == (0, 255, 0)).all()  # palette index 1: opaque green
    white = _decode_file(folder, "palette_transparent.png").rgb
    assert (white[:, :8] == 255).all()

    la = np.asarray(Image.open(folder / "la.png")).astype(int)
    out = _decode_file(folder, "la.png", background=(0, 100, 200)).rgb.astype(int)
    gray, alpha = la[..., 0:1], la[..., 1:2]
    bg = np.array([0, 100, 200])
    np.testing.assert_array_equal(out, (gray * alpha + bg * (255 - alpha) + 127) // 255)


def test_cmyk_matches_pil_conversion(corpus: tuple[Path, dict[str, Expected]]) -> None:
    folder, _ = corpus
    reference = np.asarray(Image.open(folder / "cmyk.jpg").convert("RGB"))
    np.testing.assert_array_equal(_decode_file(folder, "cmyk.jpg").rgb, reference)


def test_one_bit_and_rgba(corpus: tuple[Path, dict[str, Expected]]) -> None:
    folder, _ = corpus
    bilevel = _decode_file(folder, "bilevel.png").rgb
    assert set(np.unique(bilevel).tolist()) <= {0, 255}
    one = _decode_file(folder, "one_pixel.png").rgb
    assert one.tolist() == [[[1, 2, 3]]]


def _jpeg(width: int, height: int, seed: int = 0, **params: object) -> bytes:
    return _encode(photo_like(np.random.default_rng(seed), width, height), "JPEG", **params)


@pytest.mark.parametrize(
    ("size", "min_long_side", "scale"),
    [
        ((1024, 768), 128, 0.125),
        ((1024, 768), 256, 0.25),
        ((1000, 700), 256, 0.5),  # 1/4 would give a 250 px long side
        ((1000, 700), 250, 0.25),
        ((1024, 768), 300, 0.5),
        ((1024, 768), 600, 1.0),
        ((1001, 333), 120, 0.125),
    ],
)
def test_jpeg_draft_keeps_long_side(
    size: tuple[int, int], min_long_side: int, scale: float
) -> None:
    width, height = size
    data = _jpeg(width, height)
    full = decode_image(data)
    reduced = decode_image(data, min_long_side=min_long_side)
    assert reduced.scale == scale
    assert reduced.original_size == full.original_size == (height, width)
    assert reduced.rgb.shape == (math.ceil(height * scale), math.ceil(width * scale), 3)
    assert max(reduced.rgb.shape[:2]) >= min_long_side
    # The reduced decode shows the same picture as the full one, downsampled.
    thumb = Image.fromarray(full.rgb).resize(reduced.rgb.shape[1::-1], Image.Resampling.BOX)
    diff = np.abs(np.asarray(thumb).astype(int) - reduced.rgb.astype(int)).mean()
    assert diff < 12


def test_draft_with_rotation_and_non_jpeg() -> None:
    image = photo_like(np.random.default_rng(3), 800, 400)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = _encode(image, "JPEG", exif=exif.tobytes())
    decoded = decode_image(data, min_long_side=100)
    assert decoded.original_size == (800, 400)
    assert decoded.scale == 0.125
    assert decoded.rgb.shape == (100, 50, 3)
    png = decode_image(_encode(image, "PNG"), min_long_side=100)
    assert png.scale == 1.0
    assert png.rgb.shape == (400, 800, 3)
    with pytest.raises(ValueError, match="min_long_side"):
        decode_image(data, min_long_side=0)


def test_good_images_decode(tmp_path: Path) -> None:
    paths = write_good_images(tmp_path, 4, np.random.default_rng(0), max_side=96)
    assert [p.suffix for p in paths] == [".jpg", ".png", ".jpg", ".png"]
    for path in paths:
        decoded = decode_image(path.read_bytes())
        with Image.open(path) as image:
            assert decoded.original_size == (image.height, image.width)
        assert decoded.rgb.std() > 5  # not a flat image


def test_png_with_crc_error_in_data_is_invalid() -> None:
    good = _encode(photo_like(np.random.default_rng(1), 32, 32), "PNG")
    idat = good.index(b"IDAT")
    broken = bytearray(good)
    broken[idat + 10] ^= 0x55
    with pytest.raises(InvalidImageError) as info:
        decode_image(bytes(broken))
    assert info.value.reason in {"corrupt", "truncated"}


def test_read_image_size_header_only() -> None:
    header_only = bomb_png(300, 200)[:33] + png_chunk(b"IEND", b"")
    assert read_image_size(header_only) == (200, 300)
    with pytest.raises(InvalidImageError) as info:
        decode_image(header_only)
    assert info.value.reason in {"truncated", "corrupt"}


def _outcome(data: bytes, **kwargs: int) -> DecodedImage | str:
    """The decoded image, or the reason code of the `InvalidImageError` (nothing else)."""
    try:
        return decode_image(data, **kwargs)  # type: ignore[arg-type]
    except InvalidImageError as exc:
        return exc.reason


def _seed_images() -> list[bytes]:
    image = photo_like(np.random.default_rng(7), 24, 16)
    rgba = image.convert("RGBA")
    return [
        _encode(image, "JPEG", quality=80),
        _encode(image, "JPEG", quality=80, progressive=True),
        _encode(image, "PNG"),
        _encode(rgba, "PNG"),
        _encode(image.convert("P"), "GIF"),
        _encode(image, "WEBP", quality=80),
        _encode(image, "TIFF"),
        _encode(image, "BMP"),
    ]


SEEDS = _seed_images()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(SEEDS) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=4),
)
def test_damaged_files_never_escape_invalid_image_error(
    index: int, cut: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(SEEDS[index][: max(1, int(len(SEEDS[index]) * (0.2 + 0.8 * cut)))])
    for where, mask in flips:
        data[int(where * (len(data) - 1))] ^= mask
    outcome = _outcome(bytes(data), min_long_side=8)
    if isinstance(outcome, str):
        assert outcome in REASONS
    else:
        decoded = outcome
        assert decoded.rgb.dtype == np.uint8
        assert decoded.rgb.ndim == 3
        assert decoded.rgb.shape[2] == 3


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_never_escape_invalid_image_error(data: bytes) -> None:
    outcome = _outcome(data)
    assert isinstance(outcome, DecodedImage) or outcome in REASONS


def test_animated_images_decode_their_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    for fmt in ("GIF", "PNG", "WEBP"):
        out = BytesIO()
        frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100)
        rgb = decode_image(out.getvalue()).rgb
        assert rgb.shape == (6, 8, 3)
        assert rgb[..., 0].min() > 200, fmt
        assert rgb[..., 2].max() < 60, fmt


def test_concurrent_decoding_matches_serial(corpus: tuple[Path, dict[str, Expected]]) -> None:
    folder, expected = corpus
    blobs = [(folder / name).read_bytes() for name in expected] * 4
    blobs += [_jpeg(300, 200, seed=i) for i in range(8)]

    def outcome(data: bytes) -> tuple[str, bytes]:
        result = _outcome(data, min_long_side=64)
        if isinstance(result, str):
            return result, b""
        return "ok", result.rgb.tobytes()

    serial = [outcome(data) for data in blobs]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(outcome, blobs)) == serial
