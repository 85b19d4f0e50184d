"""Decode untrusted image bytes into RGB uint8 arrays, or fail with one `InvalidImageError`.

Reason codes (`InvalidImageError.reason`, stable, stored in the database):
    empty              zero-byte input
    not_an_image       bytes of no known image format
    unsupported_format a recognised format that is not accepted (PDF, HEIC/AVIF, PSD, SVG...)
    too_many_pixels    width * height above `max_pixels`, found from the header alone
    truncated          the pixel data ends early
    unsupported_mode   a pixel mode with no defined RGB conversion
    corrupt            anything else the decoder rejects (bad chunks, bad markers, ...)

Accepted formats: JPEG (and MPO), PNG, WebP, TIFF, BMP, GIF (first frame). Conversions to RGB:
    1, L, P, RGB, RGBX, CMYK, YCbCr, LAB, HSV: PIL's `convert("RGB")` (CMYK without ICC profile).
    LA, La, PA, RGBA, RGBa and any image with a `transparency` entry: alpha-composited over
        `background`, `out = (rgb * a + bg * (255 - a)) / 255`, rounded.
    I;16, I;16L, I;16B, I;16N and I: read as 16-bit intensities; values are clipped to
        [0, 65535] and mapped with `round(v / 257)` (0 -> 0, 65535 -> 255), the same rule for
        every image so a value means the same brightness across a dataset.
    F: read as intensities in [0.0, 1.0]; clipped, `round(v * 255)`, NaN -> 0.

ICC profiles are not applied (pixel values are taken as they are, like most training pipelines
do). Multi-frame files (GIF, APNG, WebP, TIFF) give their first frame.
PNG chunk checksums are verified (a damaged PNG is `corrupt`, not silently garbage pixels).
EXIF orientation is applied (orientation 6 swaps width and height). `original_size` is the full
image size after orientation; with `min_long_side`, JPEGs are decoded at 1/2, 1/4 or 1/8 scale
by the DCT (PIL draft mode) when the long side stays >= `min_long_side`.

Warnings: PIL reports some problems as warnings (decompression bombs, malformed EXIF or APNG).
`decode_image` keeps a warnings filter at the front of the process's filter list that turns
warnings raised inside PIL's modules into exceptions (re-inserted only when another filter was
put in front of it, so steady-state decoding leaves the list alone). The outcome for a file thus
never depends on the process's warning settings (pytest's `error`, a service's default), and
such warnings are classified like any other decoder error. `warnings.catch_warnings` is
deliberately not used: it is not thread-safe and decoding runs in worker threads. PIL's
process-wide `Image.MAX_IMAGE_PIXELS` bomb check stays in force: it bounds `max_pixels`.
"""

import logging
import math
import warnings
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from autolabel.storage.errors import InvalidImageError

logger = logging.getLogger(__name__)

#: Same as PIL's default `Image.MAX_IMAGE_PIXELS` (about 89.5 megapixels).
DEFAULT_MAX_PIXELS = 89_478_485
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")  # JPEG includes MPO
_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_PLAIN_MODES = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
_PIL_MODULES = r"PIL\."
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Signatures of formats that are recognised but not accepted.
_KNOWN_UNSUPPORTED = (
    (0, b"%PDF", "PDF"),
    (0, b"%!PS", "PostScript/EPS"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS"),
    (0, b"8BPS", "PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (0, b"<svg", "SVG"),
    (0, b"<?xml", "XML/SVG"),
    (0, b"qoif", "QOI"),
    (0, b"DDS ", "DDS"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
)
#: Signatures of accepted formats: such a file that PIL cannot identify has a broken header.
_ACCEPTED_SIGNATURES = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF8", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WebP"),
)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded image.

    Attributes:
        rgb: (H, W, 3) uint8, C-contiguous, RGB channel order, row 0 at the top after EXIF
            orientation.
        original_size: (height, width) in pixels of the full-resolution image after EXIF
            orientation; the frame that boxes and masks are stored in.
        scale: `rgb` pixels per original pixel: 1.0, or 1/2, 1/4, 1/8 after JPEG draft
            decoding (then `rgb` is `ceil(original_size * scale)` along each axis).
        format: PIL format name, e.g. "JPEG", "PNG".
    """

    rgb: npt.NDArray[np.uint8]
    original_size: tuple[int, int]
    scale: float
    format: str


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_long_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> DecodedImage:
    """Decode `data` to RGB uint8 (see the module docstring for every rule).

    Args:
        data: Encoded file content.
        max_pixels: Largest accepted width * height, checked from the header before any pixel
            is decoded.
        min_long_side: When given, a JPEG may be decoded at reduced size as long as its long
            side stays >= this (the model input size, e.g. 512 or 1024).
        background: RGB colour that transparent pixels are composited over.

    Raises:
        InvalidImageError: With one of the module's reason codes; never another exception.
    """
    if min_long_side is not None and min_long_side < 1:
        raise ValueError(f"expected min_long_side >= 1 or None, got {min_long_side}")
    with _opened(data, max_pixels) as im:
        try:
            width, height = im.size
            orientation = _orientation(im)
            scale = _draft(im, min_long_side)
            if im.format == "PNG":
                _verify_png_checksums(data)
            im.load()
            oriented = im.transpose(_TRANSPOSE[orientation]) if orientation != 1 else im
            rgb = _to_rgb(oriented, background)
        except InvalidImageError:
            raise
        except Exception as exc:  # PIL raises many exception types on hostile input
            raise _classify(exc) from exc
    original = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
    return DecodedImage(rgb, original, scale, str(im.format))


def read_image_size(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) after EXIF orientation, from the header only (no pixel decoding).

    Raises:
        InvalidImageError: For the header-level reasons (empty, not_an_image,
            unsupported_format, too_many_pixels, corrupt); truncated pixel data goes unnoticed.
    """
    with _opened(data, max_pixels) as im:
        width, height = im.size
        swapped = _orientation(im) in (5, 6, 7, 8)
    return (width, height) if swapped else (height, width)


def _install_pil_warning_filter() -> None:
    """Make warnings raised inside PIL exceptions; a no-op while our filter is first in line."""
    if warnings.filters:
        action, _message, category, module, _lineno = warnings.filters[0]
        pattern = getattr(module, "pattern", None)
        if action == "error" and category is Warning and pattern == _PIL_MODULES:
            return
    warnings.filterwarnings("error", module=_PIL_MODULES)


def _opened(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header of an accepted format and check the pixel count."""
    _install_pil_warning_filter()
    if not data:
        raise InvalidImageError("empty", "zero-byte input")
    try:
        im = Image.open(BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as exc:
        raise _unidentified(bytes(data[:16])) from exc
    except Exception as exc:  # PIL raises many exception types on hostile input
        raise _classify(exc) from exc
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise InvalidImageError(
            "too_many_pixels",
            f"expected at most {max_pixels} pixels, got {width}x{height} = {width * height}",
        )
    if width < 1 or height < 1:
        im.close()
        raise InvalidImageError("corrupt", f"expected a positive size, got {width}x{height}")
    return im


def _unidentified(head: bytes) -> InvalidImageError:
    for offset, magic, name in _ACCEPTED_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return InvalidImageError("corrupt", f"{name} signature but an unreadable header")
    for offset, magic, name in _KNOWN_UNSUPPORTED:
        if head[offset : offset + len(magic)] == magic:
            return InvalidImageError(
                "unsupported_format",
                f"expected one of {', '.join(ACCEPTED_FORMATS)}, got {name}",
            )
    return InvalidImageError(
        "not_an_image", f"expected one of {', '.join(ACCEPTED_FORMATS)}, first bytes {head[:8]!r}"
    )


def _classify(exc: BaseException) -> InvalidImageError:
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return InvalidImageError("too_many_pixels", detail)
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "end of file" in text:
        return InvalidImageError("truncated", detail)
    return InvalidImageError("corrupt", detail)


def _verify_png_checksums(data: bytes) -> None:
    """Check every chunk CRC: PIL's decoder alone accepts damaged IDAT data as garbage pixels."""
    with Image.open(BytesIO(data), formats=("PNG",)) as probe:
        probe.verify()


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8; 1 when absent or unreadable (a broken EXIF block is not fatal)."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed EXIF
        logger.debug("ignoring unreadable EXIF block: %s: %s", type(exc).__name__, exc)
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _draft(im: Image.Image, min_long_side: int | None) -> float:
    """Ask the JPEG decoder for a 1/2, 1/4 or 1/8 DCT scale; returns the scale obtained."""
    width, height = im.size
    long_side = max(width, height)
    if min_long_side is None or im.format not in _DRAFT_FORMATS or long_side < 2 * min_long_side:
        return 1.0
    target = (
        max(1, math.ceil(width * min_long_side / long_side)),
        max(1, math.ceil(height * min_long_side / long_side)),
    )
    result = im.draft(im.mode, target)
    if result is None:
        return 1.0
    return float(result[1][2]) / width


def _to_rgb(im: Image.Image, background: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    """Convert any accepted mode to an (H, W, 3) uint8 C-contiguous array."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(im).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) * 2 + 257) // 514).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        floats = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
        gray = np.rint(np.clip(floats, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:4]
        bg = np.asarray(background, dtype=np.uint32).reshape(1, 1, 3)
        mixed = (rgba[:, :, :3] * alpha + bg * (255 - alpha) + 127) // 255
        return np.ascontiguousarray(mixed.astype(np.uint8))
    if mode not in _PLAIN_MODES:
        raise InvalidImageError("unsupported_mode", f"no RGB conversion for PIL mode {mode!r}")
    rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    if not (rgb.flags.c_contiguous and rgb.flags.writeable):
        rgb = rgb.copy()
    return rgb
