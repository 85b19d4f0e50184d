"""One pixel limit: `AUTOLABEL_IMAGES__MAX_PIXELS` reaches labeling's fetch and export overlays
(both read `resources.config.max_image_pixels`)."""

import os
from functools import partial
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.flows.resources import resource_config
from autolabel.flows.settings import load_settings
from autolabel.storage.errors import InvalidImageError
from autolabel.storage.images import decode_image
from autolabel.tasks.labeling.shard import ImageRef, fetch, resolve_image
from autolabel.tasks.resources import Resources


def png(width: int, height: int) -> bytes:
    buffer = BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def resources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Resources:
    for name in list(os.environ):
        if name.startswith("AUTOLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOLABEL_IMAGES__MAX_PIXELS", "1000")
    return Resources(resource_config(load_settings()))


def test_labeling_fetch_fails_an_image_over_the_configured_limit(
    resources: Resources, tmp_path: Path
) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "small.png").write_bytes(png(20, 20))  # 400 pixels
    (tmp_path / "images" / "large.png").write_bytes(png(40, 40))  # 1600 pixels
    source = (tmp_path / "images").as_uri()
    # As `label_shard` calls it:
    get = partial(
        fetch,
        resolve=partial(resolve_image, resources, (source,)),
        max_pixels=resources.config.max_image_pixels,
    )
    small = get(ImageRef(1, f"{source}/small.png", "e"))
    large = get(ImageRef(2, f"{source}/large.png", "e"))
    assert small.failure is None
    assert small.image is not None
    assert large.failure == "too_many_pixels"


def test_export_overlays_decode_under_the_same_limit(resources: Resources) -> None:
    assert resources.config.max_image_pixels == 1000
    # As `_write_overlays` in tasks/export/coco_export.py decodes each sampled image:
    with pytest.raises(InvalidImageError) as info:
        decode_image(png(40, 40), max_pixels=resources.config.max_image_pixels)
    assert info.value.reason == "too_many_pixels"
