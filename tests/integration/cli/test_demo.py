"""`autolabel demo --random-weights` end to end on the embedded defaults (SQLite, local folder).

The README's main-job command runs the full-size architectures; this test selects the tiny test
architectures through the documented settings so that it stays fast.
"""

from pathlib import Path

import pytest
from pycocotools.coco import COCO

from tests.integration.cli.conftest import run_cli

pytestmark = pytest.mark.integration


def test_demo_runs_offline_and_exports_coco(base_env: dict[str, str], tmp_path: Path) -> None:
    env = base_env | {
        "AUTOLABEL_MODELS__DETECTOR": "grounding-dino-test",
        "AUTOLABEL_MODELS__SEGMENTER": "efficientvit-sam-test",
        "AUTOLABEL_MODELS__DEVICE": "cpu",
    }
    result = run_cli(["demo", "--random-weights"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM WEIGHTS" in result.stdout
    demo = tmp_path / "home" / "demo"
    coco = COCO(str(demo / "demo-random-weights.coco.json"))
    assert len(coco.getImgIds()) == 5  # the five sample photos, grayscale one included
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {
        "person",
        "cat",
        "cup",
        "rocket",
    }
    overlays = sorted((demo / "demo-random-weights.coco_overlays").glob("*.png"))
    assert len(overlays) == len({a["image_id"] for a in coco.loadAnns(coco.getAnnIds())})
