"""Generated image corpora: every awkward or broken input `decode_image` must handle, and
ordinary photo-like images for flow tests.

`write_bad_image_corpus` returns, for each file it writes, the documented outcome of
`autolabel.storage.images.decode_image(data)` with default arguments: either the
`InvalidImageError` reason code, or success with the (height, width) after EXIF orientation.
"""

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: Stored (width, height) of the EXIF-rotated JPEG; orientation 6 swaps them on decode.
ROTATED_STORED_WH = (40, 24)
BOMB_SIDE = 20_000


@dataclass(frozen=True)
class Expected:
    """Documented outcome for one corpus file.

    Attributes:
        reason: `InvalidImageError.reason`, or None when the file decodes.
        original_size: (height, width) after EXIF orientation when it decodes.
    """

    reason: str | None
    original_size: tuple[int, int] | None = None


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A tiny PNG whose header claims `width` x `height` RGB pixels (no real pixel data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def rotated_jpeg() -> bytes:
    """A JPEG stored `ROTATED_STORED_WH`, red block top-left, EXIF orientation 6."""
    width, height = ROTATED_STORED_WH
    image = Image.new("RGB", (width, height), (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 11, 7), fill=(255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(image, "JPEG", quality=95, exif=exif.tobytes())


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (16, 12), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    ImageDraw.Draw(image).rectangle((8, 0, 15, 11), fill=1)
    return _encode(image, "PNG", transparency=bytes([0, 255] + [255] * 254))


def _broken_png_header(good_png: bytes) -> bytes:
    broken = bytearray(good_png)
    broken[29] ^= 0xFF  # inside the IHDR CRC
    return bytes(broken)


def _files(rng: np.random.Generator) -> dict[str, tuple[bytes, Expected]]:
    jpeg = _encode(Image.fromarray(_noise(rng, 48, 64, 3)), "JPEG", quality=90)
    png = _encode(Image.fromarray(_noise(rng, 48, 64, 3)), "PNG")
    gray16 = (np.arange(30 * 50, dtype=np.uint32).reshape(30, 50) * 43).astype(np.uint16)
    floats = np.linspace(-0.5, 1.5, 20 * 10, dtype=np.float32).reshape(20, 10)
    int32 = (np.arange(12 * 8, dtype=np.int32).reshape(12, 8) - 10) * 800
    la = np.stack([_noise(rng, 10, 14, 1), np.full((10, 14), 128, np.uint8)], axis=2)
    cmyk = Image.fromarray(_noise(rng, 24, 32, 4), mode="CMYK")
    return {
        "empty.jpg": (b"", Expected("empty")),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], Expected("truncated")),
        "truncated.png": (png[: len(png) // 2], Expected("truncated")),
        "text.jpg": (b"this is a text file, not a JPEG\n", Expected("not_an_image")),
        "document.pdf": (_encode(Image.new("RGB", (8, 8)), "PDF"), Expected("unsupported_format")),
        "photo.heic": (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 40,
            Expected("unsupported_format"),
        ),
        "broken_header.png": (_broken_png_header(png), Expected("corrupt")),
        "gray16.png": (_encode(Image.fromarray(gray16), "PNG"), Expected(None, (30, 50))),
        "cmyk.jpg": (_encode(cmyk, "JPEG", quality=90), Expected(None, (24, 32))),
        # Orientation 6 turns the stored (width, height) into the decoded (height, width).
        "rotated.jpg": (rotated_jpeg(), Expected(None, ROTATED_STORED_WH)),
        "palette_transparent.png": (_palette_with_transparency(), Expected(None, (12, 16))),
        "la.png": (_encode(Image.fromarray(la, mode="LA"), "PNG"), Expected(None, (10, 14))),
        "int32.tif": (_encode(Image.fromarray(int32), "TIFF"), Expected(None, (12, 8))),
        "float.tif": (_encode(Image.fromarray(floats), "TIFF"), Expected(None, (20, 10))),
        "bilevel.png": (
            _encode(Image.fromarray(_noise(rng, 9, 7, 1) > 127), "PNG"),
            Expected(None, (9, 7)),
        ),
        "rgba.png": (
            _encode(Image.fromarray(_noise(rng, 6, 5, 4), mode="RGBA"), "PNG"),
            Expected(None, (6, 5)),
        ),
        "one_pixel.png": (
            _encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
            Expected(None, (1, 1)),
        ),
        "bomb_20000x20000.png": (bomb_png(), Expected("too_many_pixels")),
    }


def write_bad_image_corpus(folder: Path, seed: int = 0) -> dict[str, Expected]:
    """Write the corpus into `folder` (created if needed); returns file name -> outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, Expected] = {}
    for name, (data, outcome) in _files(np.random.default_rng(seed)).items():
        (folder / name).write_bytes(data)
        expected[name] = outcome
    return expected


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """An RGB image of a smooth gradient with random filled shapes and mild noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-0.5, 0.5, size=(2, 3))
    pixels = base + xs[..., None] * slope[0] * 255 / width + ys[..., None] * slope[1] * 255 / height
    pixels += rng.normal(0, 6, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1 + 4, y1 + 4), fill=colour)
        else:
            draw.rectangle((x0, y0, x1 + 4, y1 + 4), fill=colour)
    return image


def write_good_images(
    folder: Path, n: int, rng: np.random.Generator, *, max_side: int = 320
) -> list[Path]:
    """Write `n` decodable photo-like images (alternating JPEG and PNG) of random sizes.

    Returns:
        The written paths, in creation order (`img_0000.jpg`, `img_0001.png`, ...).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        width = int(rng.integers(max_side // 2, max_side + 1))
        height = int(rng.integers(max_side // 2, max_side + 1))
        image = photo_like(rng, width, height)
        suffix, fmt = (".jpg", "JPEG") if index % 2 == 0 else (".png", "PNG")
        path = folder / f"img_{index:04d}{suffix}"
        image.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths
