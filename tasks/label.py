"""The `label_shard` task: one shard of images through the models into the database."""

import socket

from prefect import task
from prefect.concurrency.sync import concurrency

from autolabel.models.detection import DetectionConfig
from autolabel.tasks import _resources
from autolabel.tasks.box_sources import CocoBoxes, DetectorBoxes
from autolabel.tasks.labeling import BoxSource
from autolabel.tasks.params import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.shard import resolver, run_shard

# The slot is leased and renewed while the shard runs: a killed worker's slot is revoked by the
# Prefect server's repossessor within this time (plus its 15 s sweep) instead of blocking forever.
DEVICE_LEASE_SECONDS = 60.0  # the smallest lease the Prefect API accepts


def device_limit_name(device: str) -> str:
    """Name of the global concurrency limit guarding one device of this worker host."""
    return f"autolabel-device-{socket.gethostname()}-{device.replace(':', '-')}"


def detection_config(job: LabelJob) -> DetectionConfig:
    t = job.thresholds
    return DetectionConfig(
        box_threshold=t.box_threshold,
        text_threshold=t.text_threshold,
        category_box_thresholds=t.category_box_thresholds,
        category_text_thresholds=t.category_text_thresholds,
        nms_iou=t.nms_iou,
        duplicate_policy=t.duplicate_policy,
        duplicate_iou=t.duplicate_iou,
        max_detections=t.max_detections,
    )


def box_source_for(job: LabelJob) -> BoxSource:
    """The job's box source, built once per process and job parameters."""
    if job.boxes_from is not None:
        url = job.boxes_from

        def load_coco() -> CocoBoxes:
            store, key = resolver(job.source)(url)
            return CocoBoxes(store.get(key), source_name=url)

        return _resources.cached(("boxes_from", url), load_coco)
    detector = _resources.detector(
        job.detector, config=detection_config(job), random_weights=job.random_weights
    )
    return DetectorBoxes(detector=detector, prompt=job.prompt_set())


@task(
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
    task_run_name="label-shard-{shard.index}",
)
def label_shard(shard: ShardRef, job: LabelJob, ctx: RunContext) -> ShardResult:
    """Label one shard, holding a slot of this host's device limit (if any) while it runs."""
    source = box_source_for(job)
    limit = _resources.runtime().device_limit
    if limit is None:
        return run_shard(shard, job, ctx, source)
    with concurrency(
        limit,
        occupy=1,
        strict=True,
        lease_duration=DEVICE_LEASE_SECONDS,
        raise_on_lease_renewal_failure=False,
    ):
        return run_shard(shard, job, ctx, source)
