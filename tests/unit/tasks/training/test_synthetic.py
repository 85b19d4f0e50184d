"""Synthetic SA-1B shards: exact, disjoint masks that match the painted pixels."""

from pathlib import Path

import numpy as np

from autolabel.storage.images import decode_image
from autolabel.storage.rle import decode_rle
from autolabel.storage.sa1b import read_shard
from tests.synthetic import synthetic_image, write_synthetic_shards


def test_shards_hold_the_generated_masks_exactly(tmp_path: Path) -> None:
    paths = write_synthetic_shards(tmp_path, shards=2, images_per_shard=3, seed=5)
    assert [p.name for p in paths] == ["sa_000000.tar", "sa_000001.tar"]
    samples = [s for p in paths for s in read_shard(p)]
    assert [s.record.image.image_id for s in samples] == [1, 2, 3, 4, 5, 6]
    for sample in samples:
        rgb = decode_image(sample.image_bytes).rgb
        rng = np.random.default_rng([5, sample.record.image.image_id])
        expected_rgb, expected_masks = synthetic_image(rng, height=96, width=128, max_shapes=6)
        assert np.array_equal(rgb, expected_rgb)
        masks = [decode_rle(a.segmentation) for a in sample.record.annotations]
        assert len(masks) == len(expected_masks)
        cover = np.zeros(rgb.shape[:2], dtype=int)
        for ann, mask, exp in zip(sample.record.annotations, masks, expected_masks, strict=True):
            assert np.array_equal(mask, exp)
            assert ann.area == mask.sum()
            ys, xs = np.nonzero(mask)
            assert ann.bbox_xywh_px == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                        ys.max() - ys.min() + 1)  # fmt: skip
            cover += mask
        assert cover.max() <= 1  # visible parts never overlap


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_synthetic_shards(tmp_path / "a", shards=1, images_per_shard=2, seed=1)[0]
    b = write_synthetic_shards(tmp_path / "b", shards=1, images_per_shard=2, seed=1)[0]
    c = write_synthetic_shards(tmp_path / "c", shards=1, images_per_shard=2, seed=2)[0]
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
