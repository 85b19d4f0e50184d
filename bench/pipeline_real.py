"""Real-architecture mode of `pipeline_throughput.py`: a labeling job's default runtimes against
plain torch float32, end to end, in one run.

Both settings label the same images through `run_shard` (store -> decode -> GroundingDINO ->
EfficientViT-SAM -> RLE -> database) with the real architectures and seeded random weights, at
the detector's default 800x1333 size. "torch-fp32" is what a job ran before runtimes could be
chosen (both models in torch float32); "auto" is today's default: each model in the fastest
installed runtime that passes its parity gate on this machine. Runtime selection (exports, the
gates, the timing of candidates) and a warm-up shard of the image shape run before the clock
starts, as they do once per worker and shape in a job.
"""

import os
import resource
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from autolabel.storage.config import S3Config
from autolabel.storage.db import label_runs, repository
from autolabel.storage.db.engine import session_scope, upgrade_to_head
from autolabel.storage.db.records import ImageIn
from autolabel.tasks.labeling.box_sources import box_source_for
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef
from autolabel.tasks.labeling.shard import chosen_runtimes, run_shard
from autolabel.tasks.resources import ResourceConfig, Resources

SETTINGS = {
    "torch-fp32": {
        "segmenter_backend": "torch",
        "segmenter_precision": "fp32",
        "detector_backend": "torch",
        "detector_precision": "fp32",
    },
    "auto": {
        "segmenter_backend": "auto",
        "segmenter_precision": "auto",
        "detector_backend": "auto",
        "detector_precision": "auto",
    },
}
PROMPTS = ["person", "car", "dog", "chair"]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def register_run(
    resources: Resources, source: str, keys: list[str], names: list[str]
) -> tuple[RunContext, list[int]]:
    """A new dataset with categories `names`, its images `<source>/<key>` and a label run: the
    run's context and the image ids in key order."""
    dataset = f"bench-{uuid.uuid4().hex[:8]}"
    with session_scope(resources.engine) as session:
        dataset_id = repository.get_or_create_dataset(session, name=dataset)
        categories = repository.ensure_categories(session, dataset_id=dataset_id, names=names)
        ids = repository.register_images(
            session,
            dataset_id=dataset_id,
            images=[ImageIn(storage_key=f"{source}/{k}", etag="1") for k in keys],
        )
        run_id = label_runs.create_label_run(
            session, dataset_id=dataset_id, work_key="bench", parameters={}
        )
    ctx = RunContext(
        dataset_id=dataset_id,
        run_id=run_id,
        work_key="bench",
        segmenter_version="bench",
        category_ids=categories,
    )
    return ctx, [ids[f"{source}/{k}"] for k in keys]


def measure_setting(
    name: str, folder: Path, db_url: str, weights: Path, *, segmenter: str, batch: int
) -> dict[str, Any]:
    """Label every image of `folder` with the runtimes of setting `name`; images/s and more."""
    upgrade_to_head(db_url)
    config = ResourceConfig(
        database_url=make_url(db_url), s3=S3Config(), weights_dir=weights, device="cpu"
    )
    resources = Resources(config)
    source = folder.resolve().as_uri()
    job = LabelJob(
        source=source,
        dataset="bench",
        prompts=PROMPTS,
        segmenter=segmenter,
        random_weights=True,
        batch_size=batch,
        shard_size=10_000,
        **SETTINGS[name],
    )
    try:
        start = time.perf_counter()
        _, runtimes = chosen_runtimes(job, resources)  # selection: once per worker
        box_source = box_source_for(job, resources)
        selection_s = time.perf_counter() - start
        keys = sorted(p.name for p in folder.iterdir())
        warm_ctx, warm_ids = register_run(resources, source, keys[:1], PROMPTS)
        run_shard(
            ShardRef(index=0, image_ids=warm_ids),
            job,
            warm_ctx,
            resources=resources,
            box_source=box_source,
        )
        ctx, image_ids = register_run(resources, source, keys, PROMPTS)
        cpu, start = _cpu_seconds(), time.perf_counter()
        result = run_shard(
            ShardRef(index=0, image_ids=image_ids),
            job,
            ctx,
            resources=resources,
            box_source=box_source,
        )
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    finally:
        resources.close()
    return {
        "setting": name,
        "runtimes": {model: choice["runtime"] for model, choice in runtimes.items()},
        "reasons": {model: choice["reason"] for model, choice in runtimes.items()},
        "images": len(image_ids),
        "annotations": result.annotations,
        "images_per_s": round(len(image_ids) / wall, 4),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "selection_s": round(selection_s, 1),
        "stage_seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def print_real(rows: list[dict[str, Any]]) -> None:
    """The table of both settings and the ratio of auto to torch-fp32."""
    print(
        f"{'setting':<11} {'segmenter':<18} {'detector':<18} {'images':>6} {'img/s':>8} "
        f"{'wall s':>7} {'cpu s':>7} {'load':>5}"
    )
    for r in rows:
        print(
            f"{r['setting']:<11} {r['runtimes'].get('segmenter', '-'):<18} "
            f"{r['runtimes'].get('detector', '-'):<18} {r['images']:>6} "
            f"{r['images_per_s']:>8.3f} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} "
            f"{r['load_average'][0]:>5.1f}"
        )
    by_name = {r["setting"]: r for r in rows}
    if {"auto", "torch-fp32"} <= set(by_name):
        ratio = by_name["auto"]["images_per_s"] / by_name["torch-fp32"]["images_per_s"]
        print(f"auto / torch-fp32: {ratio:.2f}x end to end")
    for r in rows:
        for model, reason in r["reasons"].items():
            print(f"  {r['setting']} {model}: {reason}")
