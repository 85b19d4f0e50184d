"""Mask overlays: a PNG a person can look at to judge labels at a glance."""

import colorsys
import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

_ALPHA = 0.45


def _palette(n: int) -> npt.NDArray[np.uint8]:
    """`n` well-separated RGB colours (golden-ratio steps around the hue circle)."""
    hues = [(i * 0.618033988749895) % 1.0 for i in range(n)]
    rgb = np.array([colorsys.hsv_to_rgb(h, 0.9, 1.0) for h in hues], dtype=np.float64).reshape(n, 3)
    return (rgb * 255).astype(np.uint8)


def render_overlay(
    rgb: npt.NDArray[np.uint8],
    masks: Sequence[npt.NDArray[np.bool_]],
    boxes_xywh_px: Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    max_side: int = 1024,
) -> bytes:
    """Blend each mask in its own colour over the image, outline its box, write its label.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        masks: One (H, W) bool mask per instance.
        boxes_xywh_px: One (x, y, w, h) box per instance, image pixels.
        labels: One caption per instance, e.g. "forklift 0.87".
        max_side: The PNG is downscaled so that its longer side is at most this.

    Returns:
        PNG bytes.
    """
    if not (len(masks) == len(boxes_xywh_px) == len(labels)):
        raise ValueError(
            f"expected as many masks, boxes and labels, got {len(masks)}, "
            f"{len(boxes_xywh_px)}, {len(labels)}"
        )
    canvas = rgb.astype(np.float32)
    colors = _palette(len(masks))
    for mask, color in zip(masks, colors, strict=True):
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"expected masks of shape {rgb.shape[:2]}, got {mask.shape}")
        canvas[mask] = canvas[mask] * (1.0 - _ALPHA) + color.astype(np.float32) * _ALPHA
    image = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for (x, y, w, h), label, color in zip(boxes_xywh_px, labels, colors, strict=True):
        outline = tuple(int(c) for c in color)
        draw.rectangle((x, y, x + w, y + h), outline=outline, width=2)
        draw.text((x + 3, y + 2), label, fill=outline)
    scale = max_side / max(image.size)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
