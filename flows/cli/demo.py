"""`autolabel demo`: the whole labeling flow on a few real photos, on the embedded defaults.

The photos are scikit-image's sample images (shipped inside the package, so the demo needs no
download for its data). With `--random-weights` it runs fully offline on randomly initialised
models: the pipeline is real, the labels are noise, and every output says so.
"""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import typer
from PIL import Image
from rich.console import Console

from autolabel.flows.cli.checks import prefect_for_flows
from autolabel.flows.cli.label import print_summary, run_job
from autolabel.flows.settings import load_settings

DEMO_PROMPTS = ["person", "cat", "cup", "rocket"]
DEMO_DATASET = "demo"


def _sample_photos() -> dict[str, npt.NDArray[np.uint8]]:
    from skimage import data

    loaders = {  # file name -> skimage.data function
        "astronaut.jpg": "astronaut",
        "chelsea.jpg": "chelsea",
        "coffee.jpg": "coffee",
        "rocket.jpg": "rocket",
        "camera.jpg": "camera",  # grayscale: exercises the decoder's mode conversion
    }
    return {name: np.asarray(getattr(data, fn)(), np.uint8) for name, fn in loaders.items()}


def write_demo_images(folder: Path) -> list[Path]:
    """Write the sample photos as JPEG files (existing files are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pixels in _sample_photos().items():
        path = folder / name
        if not path.exists():
            Image.fromarray(pixels).save(path, quality=92)
        paths.append(path)
    return paths


def demo(
    random_weights: bool = typer.Option(
        False,
        "--random-weights",
        help="Run offline on randomly initialised models (the labels are noise).",
    ),
) -> None:
    """Label a few sample photos end to end and export COCO with overlays."""
    from autolabel.flows.export_coco import ExportRequest, export_coco
    from autolabel.models.detection import DetectionConfig
    from autolabel.tasks.labeling.job import LabelJob

    settings = load_settings()
    folder = settings.home / "demo"
    write_demo_images(folder / "images")
    console = Console()
    if random_weights:
        console.print(
            "[bold yellow]RANDOM WEIGHTS[/]: every model is randomly initialised; the pipeline "
            "is real, the boxes and masks are noise."
        )
    job = LabelJob(
        source=(folder / "images").resolve().as_uri(),
        dataset=DEMO_DATASET + ("-random-weights" if random_weights else ""),
        prompts=DEMO_PROMPTS,
        detector=settings.models.detector,
        segmenter=settings.models.segmenter,
        thresholds=DetectionConfig(max_detections=5 if random_weights else 100),
        shard_size=64,
        batch_size=4,
        random_weights=random_weights,
    )
    output = folder / f"{job.dataset}.coco.json"
    with prefect_for_flows():  # one Prefect API for both flows
        print_summary(run_job(job))
        result = export_coco(ExportRequest(dataset=job.dataset, output=str(output), overlays=5))
    console.print(f"COCO export: {result.output} ({result.annotations} annotations)")
    for overlay in result.overlay_urls:
        console.print(f"overlay: {overlay}")
