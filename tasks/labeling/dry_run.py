"""A job's dry run: what it would label and skip, and how long it would take, before it runs."""

import time
from itertools import islice

from pydantic import BaseModel, ConfigDict

from autolabel.models.runtime.adaptive import AdaptiveBatcher
from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.tasks.labeling.box_sources import (
    box_source_for,
    detector_passes,
    job_categories,
)
from autolabel.tasks.labeling.job import LabelJob
from autolabel.tasks.labeling.runs import job_versions
from autolabel.tasks.labeling.shard import (
    ImageRef,
    ShardLabeler,
    chosen_runtimes,
    fetch,
    resolve_image,
)
from autolabel.tasks.labeling.sources import REGISTER_CHUNK, iter_source_images
from autolabel.tasks.resources import Resources


class JobPlan(BaseModel):
    """What a run of the job would do now."""

    model_config = ConfigDict(frozen=True)

    listed: int
    already_done: int
    work_key: str
    seconds_per_image: float
    detector_passes: int = 0
    categories: int = 0
    runtimes: dict[str, str] = {}

    @property
    def to_label(self) -> int:
        return self.listed - self.already_done

    @property
    def estimated_seconds(self) -> float:
        return self.to_label * self.seconds_per_image


def count_images(job: LabelJob, work_key: str, resources: Resources) -> tuple[int, int, str | None]:
    """(images listed, of which already done under `work_key`, first image URL)."""
    listed = done = 0
    first: str | None = None
    images = iter_source_images(job, resources)
    with session_scope(resources.engine) as session:
        dataset_id = queries.find_dataset(session, name=job.dataset)
        while chunk := list(islice(images, REGISTER_CHUNK)):
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


def seconds_per_image(job: LabelJob, url: str, resources: Resources) -> float:
    """Measured time to label one image (after one warm-up) in the runtimes the job would
    choose on this machine, fetch and database excluded."""

    fetched = fetch(
        ImageRef(0, url, ""),
        lambda u: resolve_image(resources, job.image_roots, u),
        max_pixels=resources.config.max_image_pixels,
    )
    labeler = ShardLabeler(
        box_source=box_source_for(job, resources),
        segmenter=chosen_runtimes(job, resources)[0],
        category_ids=dict.fromkeys(job_categories(job, resources), 0),
        model_version="dry-run",
        batcher=AdaptiveBatcher(1),
        detect_batcher=AdaptiveBatcher(1),
    )
    labeler.finish(labeler.infer([fetched]))
    start = time.perf_counter()
    labeler.finish(labeler.infer([fetched]))
    return time.perf_counter() - start


def plan_job(job: LabelJob, resources: Resources) -> JobPlan:
    """Count the job's images and what a run would skip; time one image through the models."""
    _, _, work_key = job_versions(job, resources)
    listed, done, first = count_images(job, work_key, resources)
    per_image = (
        seconds_per_image(job, first, resources) if first is not None and listed > done else 0.0
    )
    return JobPlan(
        listed=listed,
        already_done=done,
        work_key=work_key,
        seconds_per_image=per_image,
        detector_passes=detector_passes(job, resources),
        categories=len(job_categories(job, resources)),
        runtimes={
            model: choice["runtime"] for model, choice in chosen_runtimes(job, resources)[1].items()
        },
    )
