"""Register a job's images in the database: list the source (or read a manifest) and upsert."""

from collections.abc import Iterator
from itertools import islice

from prefect import task

from autolabel.storage.db import repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.records import ImageIn
from autolabel.tasks import _resources
from autolabel.tasks.params import LabelJob, ShardRef
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.shard import join_url

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_CHUNK = 1000


def iter_source_images(job: LabelJob) -> Iterator[ImageIn]:
    """Stream the images a job names, as full URLs with etag and size (never all in memory)."""
    if job.manifest is not None:
        yield from _iter_manifest(job, job.manifest)
        return
    store = _resources.store(job.source)
    suffixes = None if job.pattern else IMAGE_SUFFIXES
    for info in store.list(suffixes=suffixes, pattern=job.pattern):
        yield ImageIn(
            storage_key=join_url(job.source, info.key), etag=info.etag, size_bytes=info.size
        )


def _iter_manifest(job: LabelJob, manifest: str) -> Iterator[ImageIn]:
    from autolabel.storage.manifest import read_manifest
    from autolabel.tasks.shard import resolver

    resolve = resolver(job.source)
    manifest_store, manifest_key = resolve(manifest)
    with manifest_store.open(manifest_key) as stream:
        for entry in read_manifest(stream, name=manifest):
            url = entry.url if entry.url is not None else join_url(job.source, str(entry.key))
            store, key = resolve(url)
            info = store.head(key)
            yield ImageIn(storage_key=url, etag=info.etag, size_bytes=info.size)


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def register_images(job: LabelJob, dataset_id: int) -> int:
    """Upsert the job's images into the dataset (1,000 per transaction); returns how many."""
    engine = _resources.engine()
    images = iter_source_images(job)
    total = 0
    while chunk := list(islice(images, _CHUNK)):
        with session_scope(engine) as session:
            repository.register_images(session, dataset_id=dataset_id, images=chunk)
        total += len(chunk)
    return total


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def plan_shards(
    dataset_id: int, work_key: str, shard_size: int, retry_failed: bool
) -> list[ShardRef]:
    """Split the images still to do under `work_key` into shards of `shard_size` ids.

    Images that failed at their current etag are left out unless `retry_failed`.
    """
    shards: list[ShardRef] = []
    with session_scope(_resources.engine()) as session:
        for ids in repository.iter_pending_image_ids(
            session,
            dataset_id=dataset_id,
            work_key=work_key,
            batch_size=shard_size,
            retry_failed=retry_failed,
        ):
            shards.append(ShardRef(index=len(shards), image_ids=ids))
    return shards
