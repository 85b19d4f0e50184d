"""`autolabel label --dry-run`: what a job would do, and how long it would take, before it runs."""

import time
from itertools import islice

from rich.console import Console
from rich.table import Table

from autolabel.flows.resources import configure_process
from autolabel.flows.settings import Settings
from autolabel.models.runtime.adaptive import AdaptiveBatcher
from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.tasks import _resources
from autolabel.tasks.ingest import iter_source_images
from autolabel.tasks.label import box_source_for
from autolabel.tasks.labeling import ImageRef, ShardLabeler, fetch
from autolabel.tasks.params import LabelJob
from autolabel.tasks.runs import job_categories, job_versions
from autolabel.tasks.shard import MAX_PIXELS, resolver

_CHUNK = 1000


def count_images(job: LabelJob, work_key: str) -> tuple[int, int, str | None]:
    """(images listed, of which already done under `work_key`, first image URL)."""
    listed = done = 0
    first: str | None = None
    images = iter_source_images(job)
    with session_scope(_resources.engine()) as session:
        dataset_id = queries.find_dataset(session, name=job.dataset)
        while chunk := list(islice(images, _CHUNK)):
            first = first or chunk[0].storage_key
            listed += len(chunk)
            if dataset_id is not None:
                pairs = [(im.storage_key, im.etag) for im in chunk]
                done += len(
                    queries.done_storage_keys(
                        session, dataset_id=dataset_id, work_key=work_key, keys_etags=pairs
                    )
                )
    return listed, done, first


def seconds_per_image(job: LabelJob, url: str) -> float:
    """Measured time to label one image (after one warm-up), fetch and database excluded."""
    fetched = fetch(ImageRef(0, url, ""), resolver(job.source), max_pixels=MAX_PIXELS)
    labeler = ShardLabeler(
        box_source=box_source_for(job),
        segmenter=_resources.segmenter(job.segmenter, random_weights=job.random_weights),
        category_ids=dict.fromkeys(job_categories(job), 0),
        model_version="dry-run",
        batcher=AdaptiveBatcher(1),
        detect_batcher=AdaptiveBatcher(1),
    )
    labeler.finish(labeler.infer([fetched]))
    start = time.perf_counter()
    labeler.finish(labeler.infer([fetched]))
    return time.perf_counter() - start


def print_plan(job: LabelJob, settings: Settings) -> None:
    """Count the job's images, what a run would skip, and estimate its duration."""
    configure_process(settings)
    _, _, work_key = job_versions(job)
    listed, done, first = count_images(job, work_key)
    todo = listed - done
    per_image = seconds_per_image(job, first) if first is not None and todo else 0.0
    table = Table(title=f"dry run: {job.source} -> dataset {job.dataset!r}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("images listed", str(listed))
    table.add_row("already done (would be skipped)", str(done))
    table.add_row("to label", str(todo))
    table.add_row("measured seconds per image (models only)", f"{per_image:.3f}")
    table.add_row("estimated time", f"{todo * per_image / 60:.1f} min")
    table.add_row("work key", work_key[:16])
    Console().print(table)
