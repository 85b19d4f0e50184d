"""Synthetic SA-1B shards: random shapes on textured backgrounds, with exact masks.

Each image holds ellipses, rectangles and polygons of flat (lightly noised) colours painted over a
smooth textured background, later shapes occluding earlier ones; each mask is exactly the visible
pixels of its shape. Images are PNG (lossless), so the masks match the pixels exactly. Used by the
training tests and the demo; deterministic for a given seed.
"""

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from autolabel.storage.rle import encode_mask, rle_bboxes
from autolabel.storage.sa1b import (
    Sa1bAnnotation,
    Sa1bImage,
    Sa1bRecord,
    Sa1bSample,
    record_to_json,
    write_shard,
)

MIN_AREA_PX = 16
DEFAULT_RADIUS = (0.04, 0.3)
# Shards the test model learns from in a few dozen steps from scratch: one large shape per
# image, grey on grey. With `greys` every image has about the same pixel statistics, so the model
# (BatchNorm, trained one image per batch) segments as well with its running statistics as it
# trained with per-image ones. On random colour textures its held-out box mIoU after 60-120 steps
# ranged from below its random initialisation to +0.2 with the seed and the CPU's float kernels;
# with these greys it reached 0.77-0.93 from 0.16 in every run.
TRAINABLE_SHAPES: dict[str, Any] = {
    "height": 64, "width": 80, "max_shapes": 1, "radius": (0.3, 0.45), "greys": (70.0, 190.0)
}  # fmt: skip


def _background(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[np.float64]:
    """(H, W, 3) float texture: a colour gradient plus blurred noise and stripes."""
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(40, 215, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    img = base + xs[..., None] * slope[0] + ys[..., None] * slope[1]
    freq, phase = rng.uniform(4, 20), rng.uniform(0, 2 * np.pi)
    img += 12 * np.sin(freq * (xs + ys) * np.pi + phase)[..., None]
    small = rng.normal(0, 10, size=(height // 4 + 1, width // 4 + 1, 3))
    img += np.kron(small, np.ones((4, 4, 1)))[:height, :width]
    return np.asarray(img)


def _shape_mask(
    rng: np.random.Generator, height: int, width: int, radius: tuple[float, float]
) -> npt.NDArray[np.bool_]:
    """One random ellipse, rectangle or polygon as an (H, W) bool mask (radii: `radius` x side)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    side = min(height, width)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    rx, ry = rng.uniform(radius[0], radius[1], size=2) * side
    kind = int(rng.integers(3))
    if kind == 0:
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    elif kind == 1:
        draw.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    else:
        n = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
        radii = rng.uniform(0.5, 1.0, size=n)
        pts = [
            (float(cx + rx * r * np.cos(a)), float(cy + ry * r * np.sin(a)))
            for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(pts, fill=1)
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def synthetic_image(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    max_shapes: int,
    radius: tuple[float, float] = DEFAULT_RADIUS,
    greys: tuple[float, float] | None = None,
) -> tuple[npt.NDArray[np.uint8], list[npt.NDArray[np.bool_]]]:
    """One (H, W, 3) uint8 RGB image and the exact (H, W) bool masks of its visible shapes.

    Args:
        rng: The only source of randomness.
        height, width: Image size in pixels.
        max_shapes: 1 to `max_shapes` shapes are painted.
        radius: Range of shape half-sizes as fractions of the image's short side.
        greys: (background, shape) grey levels, lightly noised; None: a random colour texture
            and a random colour per shape. Every image then has about the same pixel
            statistics, which a BatchNorm model trained from scratch one image per batch needs to
            segment as well in eval mode (running statistics) as it trains (per-image ones).
    """
    if greys is None:
        img = _background(rng, height, width)
    else:
        img = greys[0] + rng.normal(0, 6, size=(height, width, 3))
    shapes: list[npt.NDArray[np.bool_]] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        mask = _shape_mask(rng, height, width, radius)
        colour = rng.uniform(0, 255, size=3) if greys is None else np.full(3, greys[1])
        img[mask] = colour + rng.normal(0, 4, size=(int(mask.sum()), 3))
        shapes = [s & ~mask for s in shapes]
        shapes.append(mask)
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    return rgb, [s for s in shapes if int(s.sum()) >= MIN_AREA_PX]


def synthetic_sample(
    rng: np.random.Generator,
    image_id: int,
    *,
    height: int = 96,
    width: int = 128,
    max_shapes: int = 6,
    radius: tuple[float, float] = DEFAULT_RADIUS,
    greys: tuple[float, float] | None = None,
) -> Sa1bSample:
    """One SA-1B sample (PNG image + record) with annotation ids `image_id * 1000 + k + 1`."""
    rgb, masks = synthetic_image(
        rng, height=height, width=width, max_shapes=max_shapes, radius=radius, greys=greys
    )
    rles = [encode_mask(m) for m in masks]
    boxes = rle_bboxes(rles) if rles else np.zeros((0, 4))
    annotations = tuple(
        Sa1bAnnotation(
            id=image_id * 1000 + k + 1,
            segmentation=rle,
            bbox_xywh_px=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            area=float(m.sum()),
            predicted_iou=1.0,
            stability_score=1.0,
            point_coords=(),
            crop_box=(0.0, 0.0, float(width), float(height)),
        )
        for k, (rle, m, b) in enumerate(zip(rles, masks, boxes, strict=True))
    )
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    image = Sa1bImage(image_id=image_id, width=width, height=height, file_name=f"sa_{image_id}.png")
    return Sa1bSample(
        record=Sa1bRecord(image=image, annotations=annotations), image_bytes=buf.getvalue()
    )


def iter_synthetic_samples(
    count: int,
    *,
    seed: int,
    first_id: int = 1,
    height: int = 96,
    width: int = 128,
    max_shapes: int = 6,
    radius: tuple[float, float] = DEFAULT_RADIUS,
    greys: tuple[float, float] | None = None,
) -> Iterator[Sa1bSample]:
    """`count` samples with image ids `first_id`, `first_id + 1`, ... (deterministic per seed)."""
    for i in range(count):
        rng = np.random.default_rng([seed, first_id + i])
        yield synthetic_sample(
            rng, first_id + i, height=height, width=width, max_shapes=max_shapes, radius=radius,
            greys=greys,
        )  # fmt: skip


def write_synthetic_shards(
    folder: Path,
    *,
    shards: int,
    images_per_shard: int,
    seed: int = 0,
    height: int = 96,
    width: int = 128,
    max_shapes: int = 6,
    radius: tuple[float, float] = DEFAULT_RADIUS,
    greys: tuple[float, float] | None = None,
) -> list[Path]:
    """Write `shards` tar shards `sa_000000.tar`, ... of synthetic samples into `folder`.

    Returns:
        The shard paths, in order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / f"sa_{s:06d}.tar"
        samples = iter_synthetic_samples(
            images_per_shard, seed=seed, first_id=1 + s * images_per_shard,
            height=height, width=width, max_shapes=max_shapes, radius=radius, greys=greys,
        )  # fmt: skip
        write_shard(path, samples)
        paths.append(path)
    return paths


def write_with_bad_rles(
    folder: Path,
    *,
    count: int,
    bad_ids: set[int],
    seed: int,
    shard_name: str | None = None,
    height: int = 48,
    width: int = 64,
) -> list[Sa1bSample]:
    """Write `count` synthetic samples (image ids 1, 2, ...) into `folder`, as image + JSON pairs
    or, with `shard_name`, as one tar shard; the JSON of each image id in `bad_ids` has an RLE
    whose `size` is one row taller than its image block (a bad item for every reader).

    Returns:
        All the samples, the bad ones included, in order.
    """
    samples = list(iter_synthetic_samples(count, seed=seed, height=height, width=width))
    members: list[tuple[str, bytes]] = []
    for sample in samples:
        doc = record_to_json(sample.record)
        if sample.record.image.image_id in bad_ids:
            if not doc["annotations"]:
                raise ValueError(f"expected annotations in sample {sample.record.image.image_id}")
            doc["annotations"][0]["segmentation"]["size"] = [height + 1, width]
        name = sample.record.image.file_name
        members.append((name, sample.image_bytes))
        members.append((str(Path(name).with_suffix(".json")), json.dumps(doc).encode()))
    folder.mkdir(parents=True, exist_ok=True)
    if shard_name is None:
        for name, data in members:
            (folder / name).write_bytes(data)
        return samples
    with tarfile.open(folder / shard_name, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return samples
