"""End-to-end labeling throughput against the model-only rate, with fixed-cost models.

The detector and the segmenter are replaced by stand-ins that take a fixed time per image (they
sleep, as a thread waiting on an accelerator does) and return real boxes and real masks, so the
measurement isolates what the pipeline adds: fetching and decoding images from the store, RLE
encoding, and database writes. A well overlapped pipeline runs close to the model-only rate.

    .venv/bin/python bench/pipeline_throughput.py --quick --json /tmp/pipeline.json
    .venv/bin/python bench/pipeline_throughput.py --images 1024 --pg-url postgresql://postgres@127.0.0.1:5432/test

Rows: model-only images/s (the stand-ins on pre-decoded images, no IO), end-to-end images/s
(`run_shard`: store -> decode -> models -> RLE -> database) and their ratio, per shard size.
"""

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.corpus (the image generator)

import pipeline_real  # noqa: E402  (bench/ is on sys.path when run as a script)
from sqlalchemy.engine import make_url  # noqa: E402

from autolabel.models.detection import Detections  # noqa: E402
from autolabel.models.types import MaskSet  # noqa: E402
from autolabel.storage.config import S3Config  # noqa: E402
from autolabel.storage.db.engine import upgrade_to_head  # noqa: E402
from autolabel.tasks.labeling import shard as labeling  # noqa: E402
from autolabel.tasks.labeling.job import LabelJob, ShardRef  # noqa: E402
from autolabel.tasks.labeling.shard import (  # noqa: E402
    BoxSource,
    ImageRef,
    RejectedBoxes,
    run_shard,
)
from autolabel.tasks.resources import ResourceConfig, Resources  # noqa: E402
from tests.corpus import photo_like  # noqa: E402

BOXES_PER_IMAGE = 4


class FixedCostDetector(BoxSource):
    """`seconds` per image, then BOXES_PER_IMAGE boxes spread over the image."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections | RejectedBoxes]:
        del refs
        time.sleep(self.seconds * len(images))
        return [_detections(image) for image in images]


def _detections(image: npt.NDArray[np.uint8]) -> Detections:
    h, w = image.shape[:2]
    k = BOXES_PER_IMAGE
    boxes = np.array(
        [[w * i / (k + 1), h * 0.2, w * (i + 1.5) / (k + 1), h * 0.8] for i in range(k)],
        np.float32,
    )
    return Detections(
        image_hw=(h, w),
        boxes_xyxy_px=boxes,
        scores=np.full(k, 0.9, np.float32),
        category_ids=np.zeros(k, np.int64),
        category_names=("object",) * k,
        phrases=("object",) * k,
        token_scores=tuple(np.ones(1, np.float32) for _ in range(k)),
        duplicate_of=np.full(k, -1, np.int64),
    )


def fixed_cost_segmenter(seconds: float):  # type: ignore[no-untyped-def]
    """A stand-in for `segment_boxes_batch`: `seconds` per image, elliptical masks in the boxes."""

    def segment(
        model: object,
        images: Sequence[npt.NDArray[np.uint8]],
        boxes_per_image: Sequence[npt.NDArray[np.float32]],
        **_: object,
    ) -> list[MaskSet]:
        del model
        time.sleep(seconds * len(images))
        return [
            _mask_set(image, boxes) for image, boxes in zip(images, boxes_per_image, strict=True)
        ]

    return segment


def _mask_set(image: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32]) -> MaskSet:
    h, w = image.shape[:2]
    n = len(boxes)
    fortran = np.zeros((h, w, n), np.uint8, order="F")
    ys, xs = np.mgrid[0:h, 0:w]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        fortran[:, :, i] = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    return MaskSet(
        masks=fortran.transpose(2, 0, 1).astype(bool),
        masks_fortran=fortran,
        low_res_logits=np.zeros((n, 256, 256), np.float32),
        iou_predictions=np.full(n, 0.9, np.float32),
        boxes_xyxy_px=boxes.astype(np.float64),
    )


def write_images(folder: Path, n: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo_like(rng, *size).save(folder / f"img_{i:05d}.jpg", quality=90)


def model_only_rate(folder: Path, det_s: float, seg_s: float, batch: int) -> float:
    """Images/s of the stand-in models alone, on images decoded beforehand."""
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    detector, segment = FixedCostDetector(det_s), fixed_cost_segmenter(seg_s)
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        dets = detector.boxes([], chunk)
        segment(None, chunk, [d.boxes_xyxy_px for d in dets])
    return len(images) / (time.perf_counter() - start)


def end_to_end_rate(
    folder: Path, db_url: str, shard_size: int, det_s: float, seg_s: float, batch: int
) -> tuple[float, dict[str, float]]:
    """Images/s of `run_shard` over every image, shard by shard, plus seconds per stage."""

    labeling.segment_boxes_batch = fixed_cost_segmenter(seg_s)  # type: ignore[assignment]
    upgrade_to_head(db_url)
    resources = Resources(
        ResourceConfig(
            database_url=make_url(db_url), s3=S3Config(), weights_dir=folder.parent, device="cpu"
        )
    )
    try:
        return _timed_shards(folder, resources, shard_size, det_s, batch)
    finally:
        resources.close()  # release the engine's connections before the database is dropped


def _timed_shards(
    folder: Path, resources: Resources, shard_size: int, det_s: float, batch: int
) -> tuple[float, dict[str, float]]:
    source = folder.resolve().as_uri()
    dataset = f"bench-{uuid.uuid4().hex[:8]}"
    job = LabelJob(
        source=source,
        dataset=dataset,
        prompts=["object"],
        segmenter="efficientvit-sam-test",
        detector="grounding-dino-test",
        random_weights=True,
        segmenter_backend="torch",
        detector_backend="torch",
        shard_size=shard_size,
        batch_size=batch,
    )
    keys = sorted(p.name for p in folder.iterdir())
    ctx, image_ids = pipeline_real.register_run(resources, source, keys, ["object"])
    labeling.chosen_runtimes(job, resources)  # load outside the timing
    stages: dict[str, float] = {}
    start = time.perf_counter()
    for index, first in enumerate(range(0, len(image_ids), shard_size)):
        shard = ShardRef(index=index, image_ids=image_ids[first : first + shard_size])
        result = run_shard(
            shard, job, ctx, resources=resources, box_source=FixedCostDetector(det_s)
        )
        for stage, seconds in result.seconds.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    return len(image_ids) / (time.perf_counter() - start), stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 images, one shard size.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--detector-ms", type=float, default=30.0, help="Per image.")
    parser.add_argument("--segmenter-ms", type=float, default=10.0, help="Per image.")
    parser.add_argument("--pg-url", help="PostgreSQL server URL (default: a SQLite file).")
    parser.add_argument(
        "--models",
        choices=["fixed", "real"],
        default="fixed",
        help="fixed: fixed-cost stand-ins (what the pipeline adds); real: the real architectures "
        "with random weights, torch fp32 against the default auto runtimes (pipeline_real.py)",
    )
    parser.add_argument("--segmenter", default="efficientvit-sam-l0", help="With --models real.")
    args = parser.parse_args()
    if args.models == "real":
        main_real(args)
        return
    if args.quick:
        args.images, args.shard_sizes = 256, [256]
    det_s, seg_s = args.detector_ms / 1000, args.segmenter_ms / 1000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_images(folder, args.images, tuple(args.image_size))
        model_rate = model_only_rate(folder, det_s, seg_s, args.batch_size)
        for shard_size in args.shard_sizes:
            db_url = _database(args.pg_url, Path(tmp), shard_size)
            try:
                rate, stages = end_to_end_rate(
                    folder, db_url, shard_size, det_s, seg_s, args.batch_size
                )
            finally:
                _drop_database(args.pg_url, db_url)
            rows.append(
                {
                    "shard_size": shard_size,
                    "images": args.images,
                    "model_only_images_per_s": round(model_rate, 2),
                    "end_to_end_images_per_s": round(rate, 2),
                    "ratio": round(rate / model_rate, 3),
                    "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
                    "database": "postgresql" if args.pg_url else "sqlite",
                }
            )
    print(
        f"{'shard':>6} {'images':>7} {'model-only img/s':>17} {'end-to-end img/s':>17} {'ratio':>6}"
    )
    for r in rows:
        print(
            f"{r['shard_size']:>6} {r['images']:>7} {r['model_only_images_per_s']:>17} "
            f"{r['end_to_end_images_per_s']:>17} {r['ratio']:>6}   stages {r['stage_seconds']}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "args": vars(args) | {"json": str(args.json)}}, indent=2)
        )


def main_real(args: argparse.Namespace) -> None:
    """--models real: both settings on the same images, one after the other, in one run."""
    images = 3 if args.quick else min(args.images, 12)
    size = (1333, 800) if args.image_size == [640, 480] else tuple(args.image_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_images(folder, images, size)  # type: ignore[arg-type]
        for name in pipeline_real.SETTINGS:
            db_url = _database(args.pg_url, Path(tmp), len(rows))
            try:
                rows.append(
                    pipeline_real.measure_setting(
                        name,
                        folder,
                        db_url,
                        Path(tmp) / "weights",
                        segmenter=args.segmenter,
                        batch=args.batch_size,
                    )
                )
            finally:
                _drop_database(args.pg_url, db_url)
    pipeline_real.print_real(rows)
    if args.json:
        by_name = {r["setting"]: r for r in rows}
        ratio = by_name["auto"]["images_per_s"] / by_name["torch-fp32"]["images_per_s"]
        report = {"rows": rows, "auto_over_torch_fp32": round(ratio, 3), "image_wh": size}
        report["args"] = vars(args) | {"json": str(args.json)}
        args.json.write_text(json.dumps(report, indent=2))


def _database(pg_url: str | None, tmp: Path, shard_size: int) -> str:
    if pg_url is None:
        return f"sqlite:///{tmp / f'bench-{shard_size}.db'}"
    import psycopg

    name = f"autolabel_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _drop_database(pg_url: str | None, db_url: str) -> None:
    """Drop a benchmark database created by `_database` (SQLite files go with the temp dir)."""
    if pg_url is None:
        return
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[1]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
